"""`fdd export` (issue 18): a finished run's student and distillation set as Hub-ready folders that transformers and
datasets load, with their cards and the rows' lineage; `--push-to-hub` sends both through huggingface_hub.

The run is a real small `fdd run` (real Prefect, the offline teacher over HTTP, a tiny student). The Hub is the one
fake here: this machine cannot reach huggingface.co, so HF_ENDPOINT points huggingface_hub at a local HTTP server
that answers the calls an upload makes (create the repo, validate the card's YAML, ask how to upload each file,
commit) and records them; everything up to that network boundary is the real client."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from .runs import fdd, run_env, small_run

pytestmark = pytest.mark.slow

LINEAGE = {"kind", "round", "split", "parent_id", "parent_question", "teacher_model", "prompt", "sample_index",
           "verified_by", "votes_agree", "votes_cast"}


class FakeHub(BaseHTTPRequestHandler):
    calls: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.calls.append(("POST", self.path, body, self.headers.get("Authorization")))
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/api/repos/create":
            request = json.loads(body)
            self._json({"url": f"{base}/{request.get('organization')}/{request['name']}"})
        elif self.path == "/api/validate-yaml":  # the real Hub checks a card's metadata before the commit
            self._json({})
        elif "/preupload/" in self.path:
            files = json.loads(body)["files"]
            self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        elif "/commit/" in self.path:
            repo = self.path.split("/commit/")[0].removeprefix("/api")
            self._json({"commitUrl": f"{base}{repo}/commit/{'a' * 40}", "commitOid": "a" * 40})
        else:
            self._json({"error": f"the fake Hub does not serve {self.path}"}, 404)

    def do_GET(self):  # noqa: N802
        self.calls.append(("GET", self.path, b"", None))
        self._json({"error": f"the fake Hub does not serve {self.path}"}, 404)

    def _json(self, payload, status=200):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _card(path):
    text = path.read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    assert "# license: fill in before publishing" in head
    return yaml.safe_load(head), body


def test_export_writes_folders_transformers_and_datasets_load_and_pushes_both(tmp_path, teacher_server):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    api_base, _ = teacher_server()
    done = fdd(tmp_path, small_run(tmp_path, api_base, "run.rounds=1", "data.n_seed=20", "data.n_synthetic_test=10",
                                   "feedback.similar_per_hard=1", "sandbox.workers=2"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "r"

    out = tmp_path / "export"
    done = fdd(tmp_path, ["export", str(run_dir), "--out", str(out), "--round", "last"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # the student: loads with transformers, generates, and its card says where it comes from and how it scores
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert model.generate(**tokenizer("Tom has 3 apples.", return_tensors="pt"), max_new_tokens=4).shape[1] > 0
    assert not (out / "model" / "fdd_model_manifest.json").exists()
    meta, body = _card(out / "model" / "README.md")
    [result] = meta["model-index"][0]["results"]
    eval_json = json.loads((run_dir / "rounds" / "r1" / "eval" / "eval.json").read_text())["benchmarks"]
    assert result["dataset"]["name"] == "synthetic-test"
    assert {m["name"]: m["value"] for m in result["metrics"]} == {
        "program accuracy": round(eval_json["synthetic-test"]["accuracy"], 4),
        **{f"{k} answer accuracy": round(v, 4) for k, v in eval_json["synthetic-test"]["answer_accuracy"].items()}}
    assert "Teacher: openai/fdd-offline" in body and "```yaml" in body and "| synthetic-test | 10 |" in body

    # the distillation set: round 1's training set, each row with its lineage
    ds = datasets.load_dataset("parquet", data_files=str(out / "dataset" / "data" / "*.parquet"), split="train")
    train = [json.loads(line) for line in (run_dir / "rounds" / "r1" / "training_set" / "train.jsonl").open()]
    assert ds.num_rows == len(train) and LINEAGE <= set(ds.column_names)
    rows = ds.to_list()
    seeds = [r for r in rows if r["split"] == "seed"]
    generated = [r for r in rows if r["split"] in ("easy", "hard")]
    assert seeds and generated, "round 1 trains on seed solutions and round 0's generated problems"
    assert all(r["verified_by"] == "gold answer" and r["votes_cast"] is None and r["kind"] == "solve" for r in seeds)
    assert all(r["verified_by"] == "votes" and r["round"] == 1 and r["kind"] in ("harder", "similar")
               and 2 <= r["votes_agree"] <= r["votes_cast"] and r["parent_question"] for r in generated)
    assert all(r["teacher_model"] == "openai/fdd-offline" and r["prompt"] for r in rows)
    dmeta, dbody = _card(out / "dataset" / "README.md")
    assert dmeta["configs"][0]["data_files"][0]["path"] == "data/train-00000-of-00001.parquet"
    assert f"{len(rows)} question -> program rows" in dbody

    # --push-to-hub: both folders reach the Hub's API, the model to the repo, the dataset to REPO-data
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**run_env(tmp_path), "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
               "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test_token_not_real"}
        import subprocess

        from .conftest import FDD, REPO

        done = subprocess.run([FDD, "export", str(run_dir), "--out", str(out), "--push-to-hub", "me/fdd-demo"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + str(FakeHub.calls)[-2000:]
    created = [json.loads(body) for _, path, body, _ in FakeHub.calls if path == "/api/repos/create"]
    assert [(c["organization"], c["name"], c.get("type", "model")) for c in created] == [
        ("me", "fdd-demo", "model"), ("me", "fdd-demo-data", "dataset")]
    commits = {path: body for _, path, body, _ in FakeHub.calls if "/commit/" in path}
    assert set(commits) == {"/api/models/me/fdd-demo/commit/main", "/api/datasets/me/fdd-demo-data/commit/main"}
    sent = {path: {json.loads(line)["value"]["path"]: json.loads(line)["value"] for line in body.splitlines()
                   if json.loads(line)["key"] == "file"} for path, body in commits.items()}
    model_files = sent["/api/models/me/fdd-demo/commit/main"]
    assert {"README.md", "config.json", "model.safetensors"} <= set(model_files)
    assert base64.b64decode(model_files["README.md"]["content"]) == (out / "model" / "README.md").read_bytes()
    assert set(sent["/api/datasets/me/fdd-demo-data/commit/main"]) == {"README.md", "data/train-00000-of-00001.parquet"}
    assert all(auth == "Bearer hf_test_token_not_real" for _, path, _, auth in FakeHub.calls
               if path == "/api/repos/create" or "/commit/" in path), [(c[1], c[3]) for c in FakeHub.calls]
    assert "hf_test_token_not_real" not in done.stdout + done.stderr
