"""Given a review / feedback, when the client confirms it / the care team answers it, then these
events (the deciders alone; tests/api/test_reviews_both_own.py drives the routes)."""

from __future__ import annotations

import uuid

from alliance.core.client import AnswerFeedback, FeedbackAnswered, FeedbackGiven, decide_client
from alliance.core.consent import ConsentScope
from alliance.core.goal import ConfirmReview, RecordReview, ReviewConfirmed
from tests.domain.helpers import CLIENT, CLIENT_ID, CLINICIAN, cmd, enrolled, fold_client, goal_cmd, raises
from tests.domain.test_goal import active_goal, decide, run


def test_the_client_confirms_a_review_once_and_says_why_when_they_disagree() -> None:
    review_id = uuid.uuid4()
    goal = run(active_goal(), goal_cmd(RecordReview, CLINICIAN, review_id=review_id, outcome="adjust_pace"))
    confirm = goal_cmd(ConfirmReview, CLIENT, review_id=review_id, agrees=False)
    raises("client_view_required", decide, goal, confirm)
    refused = raises("client_only", decide, goal, goal_cmd(ConfirmReview, CLINICIAN, review_id=review_id,
                                                                 agrees=True))
    assert refused.status == 403
    raises("review_not_found", decide, goal, goal_cmd(ConfirmReview, CLIENT, review_id=uuid.uuid4(), agrees=True))
    [event] = decide(goal, goal_cmd(ConfirmReview, CLIENT, review_id=review_id, agrees=False,
                                    client_view="Weekends suit me better"))
    assert event == ReviewConfirmed(review_id=review_id, agrees=False, client_view="Weekends suit me better",
                                    by=CLIENT_ID, by_role=CLIENT.role)
    raises("review_already_confirmed", decide, [*goal, event],
           goal_cmd(ConfirmReview, CLIENT, review_id=review_id, agrees=True))


def test_feedback_is_answered_by_the_care_team_with_what_changed() -> None:
    feedback_id, change = uuid.uuid4(), uuid.uuid4()
    state = fold_client([*enrolled(ConsentScope.MEASUREMENT), FeedbackGiven(
        feedback_id=feedback_id, text="Too rushed", by=CLIENT_ID, by_role=CLIENT.role)])
    answer = cmd(AnswerFeedback, CLINICIAN, feedback_id=feedback_id, answer_id=uuid.uuid4(),
                 text="We moved it to weekends", change_event_ids=(change, change))
    raises("clinician_only", decide_client, cmd(AnswerFeedback, CLIENT, feedback_id=feedback_id,
                                                answer_id=uuid.uuid4(), text="x"), state)
    raises("feedback_not_found", decide_client, cmd(AnswerFeedback, CLINICIAN, feedback_id=uuid.uuid4(),
                                                    answer_id=uuid.uuid4(), text="x"), state)
    raises("text_required", decide_client, cmd(AnswerFeedback, CLINICIAN, feedback_id=feedback_id,
                                               answer_id=uuid.uuid4(), text=" "), state)
    [event] = decide_client(answer, state)
    assert isinstance(event, FeedbackAnswered) and event.change_event_ids == (change,)  # each change once
    raises("duplicate_id", decide_client, answer, fold_client([*enrolled(), FeedbackGiven(
        feedback_id=feedback_id, text="Too rushed", by=CLIENT_ID, by_role=CLIENT.role), event]))
