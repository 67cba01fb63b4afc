"""The `gpu` tag (tasks/tags.py): kept on any server a tag concurrency limit can live on, left off only on the
temporary server the run's own `fdd run` started (the API URL it marked as its own)."""

from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.stages import evaluate_task, prepare_data_task, train_task
from tasks.tags import GPU, OWN_SERVER_ENV, local

OWN = "http://127.0.0.1:41985/api"


def test_only_the_runs_own_temporary_server_drops_the_gpu_tag(monkeypatch):
    monkeypatch.setenv(OWN_SERVER_ENV, OWN)
    with temporary_settings({PREFECT_API_URL: OWN}):
        assert local(train_task).tags == set() and local(evaluate_task).tags == set()
        assert local(prepare_data_task) is prepare_data_task  # untagged tasks pass as they are
    assert train_task.tags == {GPU}  # the task itself keeps its tag: deployments and other runs see it
    with temporary_settings({PREFECT_API_URL: "http://prefect.example:4200/api"}):  # a shared server
        assert local(train_task).tags == {GPU}
    monkeypatch.delenv(OWN_SERVER_ENV)
    with temporary_settings({PREFECT_API_URL: OWN}):  # a server no `fdd run` of this process started
        assert local(train_task).tags == {GPU}
