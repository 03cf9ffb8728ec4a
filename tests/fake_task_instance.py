"""A stand-in for Airflow's task instance in a task's context, for the alert's code: XComs and the run's states."""

from __future__ import annotations

import copy


class FakeTaskInstance:
    """What send_alert asks of Airflow's task instance: XComs, and the run's task states (the Execution API's)."""

    def __init__(self, pulled: dict, run_id: str, states: dict[str, str]) -> None:
        self.pulled, self.run_id, self.states = pulled, run_id, states
        self.dag_id = "greenery_daily"

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        return copy.deepcopy(self.pulled.get((task_ids, key)))

    def get_task_states(self, dag_id: str, run_ids: list[str], task_ids: list[str]) -> dict:
        assert (dag_id, run_ids) == (self.dag_id, [self.run_id])
        return {self.run_id: {t: self.states[t] for t in task_ids if t in self.states}}
