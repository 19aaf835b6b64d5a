"""Events: the envelope, the codec, personal-field encryption and the store."""
