"""The training stage end to end on tiny models: from config and from hub-format folders, full and LoRA,
causal and seq2seq; saved checkpoints load with plain transformers; seeds and round restarts are exact."""

import json
from pathlib import Path

import pytest
import torch

from fdd_core.config import FDDConfig
from fdd_core.records import Example
from fdd_core.store import write_jsonl
from fdd_core.student import base_checkpoint, load_student, train_student
from fdd_core.student.factory import save_dir_atomically, train_tokenizer
from fdd_core.student.train import cpu_computes_bf16
from fdd_core.synthetic import make_splits

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def examples(n: int, seed: int = 0) -> list[Example]:
    return [
        Example(id=p.id, question=p.question, program=p.solution, answer=p.answer, source=p.source)
        for p in make_splits(n, 0, seed=seed)[0]
    ]


def texts(rows: list[Example]) -> list[str]:
    return [t for e in rows for t in (e.question, e.program)]


def tiny_cfg(**training) -> FDDConfig:
    cfg = FDDConfig()
    cfg.student.hidden_size, cfg.student.num_layers, cfg.student.num_heads = 64, 2, 2
    cfg.training.device = "cpu"
    for key, value in {"max_steps": 8, "batch_size": 16, "learning_rate": 3e-3, **training}.items():
        setattr(cfg.training, key, value)
    return cfg


def state(path: Path, auto) -> dict[str, torch.Tensor]:
    return auto.from_pretrained(path).state_dict()


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, list[Example]]:
    rows = examples(300)
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_jsonl(path, rows)
    return path, rows


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, data) -> tuple[FDDConfig, Path]:
    cfg = tiny_cfg()
    run_dir = tmp_path_factory.mktemp("run")
    return cfg, base_checkpoint(cfg, run_dir, texts(data[1]))


# -------------------------------------------------------------------------------------------- (a) from config
@pytest.mark.slow
def test_tiny_student_learns_saves_and_is_deterministic(tmp_path, data, tiny_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, base = tiny_base
    cfg = cfg.model_copy(deep=True)
    cfg.training.max_steps = 40
    seen = []
    result = train_student(cfg, data[0], tmp_path / "a", base=base, progress=lambda s, t: seen.append((s, t)))
    assert result.stage == "train" and result.counts.examples == 300 and result.counts.steps == 40
    assert result.counts.final_loss < 0.6 * result.counts.first_loss
    assert seen[0] == (0, 40) and seen[-1] == (40, 40)

    model_dir = Path(result.outputs["model"])
    assert model_dir == tmp_path / "a" / "model"
    AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    saved = json.loads((tmp_path / "a" / "training_config.json").read_text())
    assert saved["fdd_config"]["training"]["max_steps"] == 40 and saved["start"] == str(base)
    # the stage folder ends with its MANIFEST, like every stage's (no trainer scratch left behind)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["MANIFEST.json", "model", "train_log.jsonl",
                                                                  "training_config.json"]

    again = train_student(cfg, data[0], tmp_path / "b", base=base)
    assert same_weights(state(model_dir, AutoModelForCausalLM), state(again.outputs["model"], AutoModelForCausalLM))
    assert again.counts.train_loss == result.counts.train_loss


def test_training_knobs_come_from_the_config(tmp_path, data, tiny_base):
    cfg, base = tiny_base
    cfg = cfg.model_copy(deep=True)
    for key, value in {"max_steps": 6, "batch_size": 8, "gradient_accumulation_steps": 2, "logging_steps": 2,
                       "lr_scheduler": "constant", "warmup": 0.0, "weight_decay": 0.01}.items():
        setattr(cfg.training, key, value)
    result = train_student(cfg, data[0], tmp_path / "k", base=base)
    log = [json.loads(line) for line in (tmp_path / "k" / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "loss" in row] == [1, 2, 4, 6] and result.counts.steps == 6
    assert {row["learning_rate"] for row in log if "learning_rate" in row} == {cfg.training.learning_rate}
    saved = json.loads((tmp_path / "k" / "training_config.json").read_text())
    assert saved["fdd_config"]["training"]["gradient_accumulation_steps"] == 2 and "knobs" not in saved


def test_packed_batches_give_the_padded_losses_with_less_padding(tmp_path, data, tiny_base):
    """training.packing lays each batch's examples end to end: the same batches and losses, far fewer pad tokens."""
    cfg, base = tiny_base
    runs = {}
    for packing in (False, True):
        run_cfg = cfg.model_copy(deep=True)
        run_cfg.training.packing, run_cfg.training.max_steps, run_cfg.training.logging_steps = packing, 6, 1
        train_student(run_cfg, data[0], tmp_path / str(packing), base=base)
        log = [json.loads(line) for line in (tmp_path / str(packing) / "train_log.jsonl").read_text().splitlines()]
        saved = json.loads((tmp_path / str(packing) / "training_config.json").read_text())
        runs[packing] = [row["loss"] for row in log if "loss" in row], saved
    (padded_losses, padded), (packed_losses, packed) = runs[False], runs[True]
    assert packed["packed"] and not padded["packed"]
    assert packed["padding_share"] < padded["padding_share"] - 0.05, (packed["padding_share"], padded["padding_share"])
    assert packed_losses == pytest.approx(padded_losses, rel=2e-3) and len(packed_losses) == 6


def test_precision_auto_takes_bf16_where_the_cpu_computes_it(tmp_path, data, tiny_base):
    """training.precision auto: bf16 autocast on a CPU with bf16 in hardware (the demo's steps 1.17-1.22x faster), fp32 on
    other CPUs and when asked; training_config.json says which, and bf16 really ran (its losses differ)."""
    cfg, base = tiny_base
    runs = {}
    for precision in ("auto", "fp32"):
        run_cfg = cfg.model_copy(deep=True)
        run_cfg.training.precision, run_cfg.training.max_steps, run_cfg.training.logging_steps = precision, 4, 1
        train_student(run_cfg, data[0], tmp_path / precision, base=base)
        log = [json.loads(line) for line in (tmp_path / precision / "train_log.jsonl").read_text().splitlines()]
        saved = json.loads((tmp_path / precision / "training_config.json").read_text())
        runs[precision] = saved["precision"], [row["loss"] for row in log if "loss" in row]
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    native = cpu_computes_bf16()
    if flags:  # torch's probe agrees with the kernel's view of this CPU
        assert native == ("avx512_bf16" in flags or "amx_tile" in flags)
    assert runs["auto"][0] == ("bf16" if native else "fp32") and runs["fp32"][0] == "fp32"
    assert (runs["auto"][1] != runs["fp32"][1]) == native
    assert runs["auto"][1] == pytest.approx(runs["fp32"][1], rel=2e-2)  # bf16 trains the same model


def test_architecture_mismatch_uses_the_checkpoints(tmp_path, data, tiny_base, caplog):
    cfg, base = tiny_base
    cfg = cfg.model_copy(deep=True)
    cfg.training.max_steps, cfg.student.architecture = 1, "seq2seq"
    result = train_student(cfg, data[0], tmp_path / "m", base=base)
    assert result.counts.steps == 1 and "using the checkpoint's" in caplog.text
    assert json.loads((tmp_path / "m" / "training_config.json").read_text())["seq2seq"] is False


def test_base_checkpoint_is_built_once(tmp_path, data):
    cfg = tiny_cfg()
    cfg.student.hidden_size, cfg.student.num_layers = 16, 1
    base = base_checkpoint(cfg, tmp_path, texts(data[1][:50]))
    assert base == tmp_path / "base" and (base / "config.json").exists()
    stamp = (base / "model.safetensors").stat().st_mtime_ns
    assert base_checkpoint(cfg, tmp_path, []) == base  # reused, not rebuilt (an empty corpus would differ)
    assert (base / "model.safetensors").stat().st_mtime_ns == stamp
    cfg.student.hidden_size = 32
    with pytest.raises(ValueError, match="another student config"):
        base_checkpoint(cfg, tmp_path, texts(data[1][:50]))
    cfg.student.model = "some-org/some-model"
    assert base_checkpoint(cfg, tmp_path, []) == "some-org/some-model"


def test_atomic_save_keeps_the_old_folder_on_failure(tmp_path):
    target = tmp_path / "model"
    save_dir_atomically(target, lambda d: (d / "weights").write_text("old"))

    def broken(d: Path) -> None:
        (d / "weights").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        save_dir_atomically(target, broken)
    assert (target / "weights").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    save_dir_atomically(target, lambda d: (d / "weights").write_text("new"))
    assert (target / "weights").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["model"]


# ------------------------------------------------------------------------------------ (b) hub-format folders
@pytest.fixture(scope="module")
def hub_models(tmp_path_factory, data) -> dict[str, Path]:
    """Checkpoints as a user brings them: a tiny Llama whose tokenizer has a chat template and no pad token,
    and a tiny T5 with the hub's ByT5 tokenizer (a byte tokenizer that appends </s>)."""
    from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    tok = train_tokenizer(texts(data[1]), seq2seq=False)
    tok.chat_template = CHAT_TEMPLATE
    tok.pad_token = None
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, eos_token_id=tok.eos_token_id,
    ))
    llama.save_pretrained(root / "llama")
    tok.save_pretrained(root / "llama")
    byt5 = ByT5Tokenizer()
    t5 = T5ForConditionalGeneration(T5Config(
        vocab_size=len(byt5), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2,
        pad_token_id=byt5.pad_token_id, eos_token_id=byt5.eos_token_id, decoder_start_token_id=byt5.pad_token_id,
    ))
    t5.save_pretrained(root / "t5")
    byt5.save_pretrained(root / "t5")
    return {"causal": root / "llama", "seq2seq": root / "t5"}


@pytest.mark.parametrize("architecture", ["causal", "seq2seq"])
@pytest.mark.parametrize("method", ["full", "lora"])
def test_hub_format_checkpoints_train_and_load(tmp_path, hub_models, data, architecture, method):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    auto = AutoModelForSeq2SeqLM if architecture == "seq2seq" else AutoModelForCausalLM
    base = hub_models[architecture]
    cfg = tiny_cfg(method=method, max_steps=3, batch_size=8, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    cfg.student.model, cfg.student.architecture, cfg.student.max_length = str(base), architecture, 512
    small = tmp_path / "train.jsonl"
    write_jsonl(small, examples(24, seed=1))
    result = train_student(cfg, small, tmp_path / "out", base=base_checkpoint(cfg, tmp_path, []))
    assert result.counts.steps == 3 and result.counts.examples > 0

    model_dir = Path(result.outputs["model"])
    merged = auto.from_pretrained(model_dir)  # plain transformers, LoRA or not
    AutoTokenizer.from_pretrained(model_dir)
    assert not same_weights(merged.state_dict(), state(base, auto))  # training changed the weights
    student = load_student(model_dir)
    assert student.seq2seq == (architecture == "seq2seq") and student.tokenizer.pad_token_id is not None

    if method == "lora":
        adapter_dir = Path(result.outputs["adapter"])
        adapter_cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
        assert adapter_cfg["base_model_name_or_path"] == str(base.resolve())
        with_adapter = PeftModel.from_pretrained(auto.from_pretrained(base), adapter_dir).eval()
        loaded = load_student(adapter_dir)
        assert isinstance(loaded.model, PeftModel) and loaded.seq2seq == (architecture == "seq2seq")
        ids = torch.tensor([[5, 6, 7, 8, 9]])
        kwargs = {"decoder_input_ids": torch.tensor([[0, 5, 6]])} if architecture == "seq2seq" else {}
        with torch.no_grad():
            want = with_adapter(input_ids=ids, **kwargs).logits
            assert torch.allclose(merged.eval()(input_ids=ids, **kwargs).logits, want, atol=1e-4)
            assert torch.allclose(loaded.model(input_ids=ids, **kwargs).logits, want, atol=1e-4)
    else:
        assert "adapter" not in result.outputs


# ------------------------------------------------------------------------------- (c) rounds restart from base
@pytest.mark.slow
def test_rounds_restart_from_base_unless_continuing(tmp_path, data, tiny_base):
    from transformers import AutoModelForCausalLM

    cfg, base = tiny_base
    round1 = train_student(cfg, data[0], tmp_path / "r1", base=base)
    round2 = train_student(cfg, data[0], tmp_path / "r2", base=base, previous=tmp_path / "r1")
    w1 = state(round1.outputs["model"], AutoModelForCausalLM)
    assert same_weights(w1, state(round2.outputs["model"], AutoModelForCausalLM))

    cont = cfg.model_copy(deep=True)
    cont.training.continue_from_previous = True
    round2c = train_student(cont, data[0], tmp_path / "r2c", base=base, previous=tmp_path / "r1")
    assert not same_weights(w1, state(round2c.outputs["model"], AutoModelForCausalLM))
    saved = json.loads((tmp_path / "r2c" / "training_config.json").read_text())
    assert saved["start"] == str(tmp_path / "r1" / "model")
    assert round2c.counts.first_loss < round1.counts.first_loss  # it started from the trained model
