"""The job context a task sees."""

from __future__ import annotations

from jobq.context import JobContext


def test_a_context_made_positionally_is_the_one_made_by_keywords():
    """JobContext._of (a worker's, one a job) sets what __init__ sets, in the same order."""
    def save(checkpoint, progress):
        return None

    def cancelled():
        return False

    def stopping():
        return True

    def parents():
        return [1]

    made = JobContext._of("j1", 2, {"at": 3}, 0.5, save, cancelled, stopping, parents)
    expected = JobContext(job_id="j1", attempt=2, checkpoint={"at": 3}, progress=0.5, save=save,
                          cancelled=cancelled, stopping=stopping, parent_results=parents)
    assert type(made) is JobContext
    assert list(vars(made).items()) == list(vars(expected).items())
    assert made.stopping and not made.cancelled and made.parent_results == [1]
