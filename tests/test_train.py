"""The trainer on a tiny model and a toy stream: schedule, guards, rollback, checkpoints, figures."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from fournil.train import checkpoint as ckpt
from fournil.train.config import TrainConfig
from fournil.train.schedule import lr_at
from train_helpers import config, make_trainer, poisoned_model, tiny_model


pytestmark = pytest.mark.usefixtures("one_thread")  # bitwise comparisons want one thread


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def step_losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in log_lines(out) if "loss" in r}


def test_cosine_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55)  # halfway down the cosine
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_wsd_holds_the_peak_so_a_run_can_be_extended():
    short = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.0, schedule="wsd", decay_fraction=0.2)
    longer = short.model_copy(update={"max_steps": 200})
    assert [lr_at(s, short) for s in range(10, 80)] == [1.0] * 70
    assert [lr_at(s, short) for s in range(80)] == [lr_at(s, longer) for s in range(80)]
    assert lr_at(90, short) == pytest.approx(0.5) and lr_at(100, short) == 0.0


def test_training_logs_every_step_per_language_and_learns(tmp_path):
    cfg = config(max_steps=30)
    figures = make_trainer(tmp_path, cfg).train()
    lines = log_lines(tmp_path)
    assert [r["step"] for r in lines] == list(range(1, 31))
    assert lines[-1]["tokens"] == 30 * 256 and figures["gradient_accumulation"] == 2
    assert set(lines[0]["loss_per_language"]) == {"fr", "en"}
    assert all(r["tokens_per_language"] == {"fr": 120, "en": 120} for r in lines)  # 4 rows × 30 targets each
    # the overall loss is the token-weighted mean of the per-language ones
    first = lines[0]
    assert first["loss"] == pytest.approx(sum(first["loss_per_language"].values()) / 2, rel=1e-5)
    assert lines[-1]["loss"] < 0.6 * lines[0]["loss"]
    assert figures["steps"] == 30 and figures["skipped_steps"] == 0 and figures["rollbacks"] == 0
    assert figures["per_language"]["fr"]["final_loss"] < lines[0]["loss_per_language"]["fr"]


def test_energy_and_mfu_figures(tmp_path):
    figures = make_trainer(tmp_path, config(max_steps=5, peak_flops=1e9, grid_g_per_kwh=100.0)).train()
    energy = figures["energy"]
    assert energy["kwh"] > 0 and energy["kwh"] == energy["kwh_this_run"]
    assert energy["kg_co2eq"] == pytest.approx(energy["kwh"] * 100 / 1000, rel=1e-3)
    assert "CPU time" in energy["method"] and energy["grid_g_per_kwh"] == 100.0
    assert figures["mfu"] > 0 and figures["peak_flops"] == 1e9
    assert log_lines(tmp_path)[-1]["mfu"] > 0


def test_log_lines_carry_cumulative_energy_at_each_host_read_and_across_resumes(tmp_path):
    first = make_trainer(tmp_path, config(max_steps=10, log_every=5, checkpoint_every=10, grid_g_per_kwh=200.0)).train()
    lines = log_lines(tmp_path)
    energy = {r["step"]: r["energy_kwh"] for r in lines}
    assert [s for s, kwh in energy.items() if kwh is not None] == [5, 10]  # only when the records are read
    assert 0 <= energy[5] <= energy[10] <= first["energy"]["kwh"]
    assert all(r["kg_co2eq"] == pytest.approx(r["energy_kwh"] * 200 / 1000, rel=1e-4) for r in lines if r["energy_kwh"])
    saved = json.loads((tmp_path / "checkpoints/step_10/state.json").read_text())["energy"]["kwh"]
    resumed = make_trainer(tmp_path, config(max_steps=15, log_every=5, grid_g_per_kwh=200.0)).train()
    lines = log_lines(tmp_path)
    assert [r["step"] for r in lines] == list(range(1, 16))
    assert saved > 0 and lines[-1]["energy_kwh"] >= saved >= energy[10] * (1 - 1e-5)  # the resumed run adds to what the checkpoint carried (log lines keep 6 significant digits)
    assert resumed["energy"]["kwh"] == pytest.approx(saved + resumed["energy"]["kwh_this_run"], rel=1e-4)


def moments(trainer) -> list[torch.Tensor]:
    return [v.clone() for o in trainer.optimizers for entry in o.state_dict()["state"].values() for v in entry.values()]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_non_finite_loss_skips_the_step_and_leaves_weights_untouched(tmp_path, optimizer):
    cfg = config(max_steps=12, optimizer=optimizer)
    # global batch = 8 sequences; sequence 40 lies in step 6 (0-based 5)
    trainer = make_trainer(tmp_path, cfg, model=poisoned_model(tiny_model(), math.nan), poison=range(40, 41))
    for _ in range(5):
        trainer.train_step()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    kept = moments(trainer)
    trainer.train_step()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert len(kept) > 2 and all(torch.equal(a, b) for a, b in zip(kept, moments(trainer), strict=True))
    trainer.train_step()
    assert not all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    rows = torch.stack(trainer.records).tolist()  # loss, grad norm, skipped, ...
    assert [row[2] for row in rows] == [0.0] * 5 + [1.0, 0.0]
    assert math.isnan(rows[5][0]) and math.isfinite(rows[6][0])


def test_repeated_spikes_roll_back_and_skip_the_data(tmp_path):
    # steps 23-26 (sequences 176-207) carry a 30× loss: four skips in a row → back to step 20
    cfg = config(max_steps=30, log_every=1, rollback_after=4)
    trainer = make_trainer(tmp_path, cfg, model=poisoned_model(tiny_model(), 30.0), poison=range(176, 208))
    figures = trainer.train()
    lines = log_lines(tmp_path)
    events = [r for r in lines if r.get("event") == "rollback"]
    assert len(events) == 1 and events[0]["from_step"] == 26 and events[0]["to_step"] == 20
    assert figures["rollbacks"] == 1 and figures["skipped_steps"] == 4 and figures["steps"] == 30
    after = lines[lines.index(events[0]) + 1:]
    assert [r["step"] for r in after] == list(range(21, 31)) and not any(r["skipped"] for r in after)


def test_rollbacks_are_bounded(tmp_path):
    cfg = config(max_steps=30, log_every=1, rollback_after=2, max_rollbacks=0)
    trainer = make_trainer(tmp_path, cfg, model=poisoned_model(tiny_model(), 30.0), poison=range(176, 400))
    from fournil.errors import FournilError

    with pytest.raises(FournilError, match="diverged"):
        trainer.train()


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    reference = tmp_path / "reference"
    make_trainer(reference, config(max_steps=30)).train()
    run = tmp_path / "run"
    make_trainer(run, config(max_steps=30)).train()
    blob = run / "checkpoints" / "step_30" / "model.safetensors"
    data = bytearray(blob.read_bytes())
    data[-3] ^= 0xFF
    blob.write_bytes(data)
    figures = make_trainer(run, config(max_steps=30)).train()
    assert "step_30 is corrupt" in capsys.readouterr().err
    assert figures["resumed_from_step"] == 20
    assert step_losses(run) == step_losses(reference)


def test_every_checkpoint_corrupt_is_an_error_not_a_silent_restart(tmp_path):
    from fournil.errors import FournilError

    make_trainer(tmp_path, config(max_steps=20, keep_last=2)).train()
    for folder in (tmp_path / "checkpoints").glob("step_*"):
        (folder / "state.json").write_text("{}")
    with pytest.raises(FournilError, match=r"every checkpoint in .*checkpoints is corrupt .*; move the folder away to keep it, "
                                           r"or run with --force to start afresh"):
        make_trainer(tmp_path, config(max_steps=20)).train()


def test_a_run_stopped_before_its_first_checkpoint_starts_again_and_logs_each_step_once(tmp_path):
    first = make_trainer(tmp_path, config(max_steps=20, checkpoint_every=50, log_every=1))
    step = first.train_step

    def killed_at_step_5() -> None:
        step()
        if first.step == 5:
            raise KeyboardInterrupt  # as SIGKILL: no checkpoint written

    first.train_step = killed_at_step_5
    with pytest.raises(KeyboardInterrupt):
        first.train()
    assert list(step_losses(tmp_path)) == [1, 2, 3, 4]
    make_trainer(tmp_path, config(max_steps=8, checkpoint_every=50, log_every=1)).train()
    assert list(step_losses(tmp_path)) == list(range(1, 9))


def test_checkpoints_keep_the_last_k_and_milestones(tmp_path):
    make_trainer(tmp_path, config(max_steps=50, keep_last=2, milestone_every=20)).train()
    assert [s for s, _ in ckpt.step_dirs(tmp_path / "checkpoints")] == [20, 40, 50]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_50"
    folder = tmp_path / "checkpoints" / "step_50"
    assert ckpt.verify(folder) is None
    state = json.loads((folder / "state.json").read_text())
    assert state["step"] == 50 and state["ranks"][0]["sampler"] == {"sequence": 400}


def test_half_written_checkpoint_is_ignored(tmp_path):
    make_trainer(tmp_path, config(max_steps=10)).train()
    (tmp_path / "checkpoints" / ".tmp-step_20").mkdir()  # a crash in the middle of a save
    assert ckpt.latest_valid(tmp_path / "checkpoints", print).name == "step_10"


def test_codecarbon_runs_beside_the_meter_and_adds_up_across_resumes(tmp_path):
    from codecarbon.input import DataSource

    france = DataSource().get_global_energy_mix_data()["FRA"]["carbon_intensity"]  # g CO2eq per kWh
    first = make_trainer(tmp_path, config(max_steps=10, checkpoint_every=10, codecarbon_country="FRA")).train()["energy"]
    cc = first["codecarbon"]
    assert cc["kwh"] > 0 and cc["kwh"] == cc["kwh_this_run"] and cc["since_step"] == 0 and cc["country"] == "FRA"
    assert sum(cc["kwh_this_run_by_part"].values()) == pytest.approx(cc["kwh"], rel=1e-4)
    assert cc["kwh_this_run_by_part"]["gpu"] == 0
    assert cc["kg_co2eq"] * 1000 / cc["kwh"] == pytest.approx(france, rel=1e-3)  # codecarbon's own intensity, not the recipe's 475
    assert "OfflineEmissionsTracker" in cc["method"] and first["kg_co2eq"] == pytest.approx(first["kwh"] * 0.475, rel=1e-4)
    saved = json.loads((tmp_path / "checkpoints/step_10/state.json").read_text())["energy"]["codecarbon"]
    assert saved["kwh"] > 0 and saved["from_step"] == 0
    resumed = make_trainer(tmp_path, config(max_steps=15, codecarbon_country="FRA")).train()["energy"]["codecarbon"]
    assert resumed["kwh"] == pytest.approx(saved["kwh"] + resumed["kwh_this_run"], rel=1e-4) and resumed["since_step"] == 0


def test_codecarbon_turned_on_at_a_resume_counts_from_there(tmp_path):
    make_trainer(tmp_path, config(max_steps=10, checkpoint_every=10)).train()
    cc = make_trainer(tmp_path, config(max_steps=12, codecarbon_country="DEU")).train()["energy"]["codecarbon"]
    assert cc["since_step"] == 10 and cc["kwh"] == cc["kwh_this_run"] > 0


def test_codecarbon_needs_a_country_it_knows_and_the_package(tmp_path, monkeypatch):
    from fournil.errors import FournilError
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="an ISO 3166 alpha-3 country code in capitals"):
        config(codecarbon_country="fr")
    with pytest.raises(FournilError, match="'XYZ' is not in codecarbon's grid data"):
        make_trainer(tmp_path / "a", config(max_steps=2, codecarbon_country="XYZ")).train()
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    with pytest.raises(FournilError, match=r"needs codecarbon: pip install 'fournil\[energy\]'"):
        make_trainer(tmp_path / "b", config(max_steps=2, codecarbon_country="FRA")).train()


def test_out_of_memory_says_what_to_lower_and_the_run_resumes_with_it(tmp_path):
    from fournil.errors import FournilError

    make_trainer(tmp_path, config(max_steps=10, checkpoint_every=10)).train()
    model = tiny_model()
    forward = model.forward

    def too_big(input_ids, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(input_ids, *args, **kwargs)

    model.forward = too_big
    with pytest.raises(FournilError, match=r"^out of memory in step 11 \(CPU .*\) with 4 sequences of 32 tokens a micro-batch: "
                                           r"lower train.micro_batch_size .* then run the same command again: it resumes"):
        make_trainer(tmp_path, config(max_steps=20), model=model).train()
    figures = make_trainer(tmp_path, config(max_steps=20, micro_batch_size=2), model=model).train()
    assert figures["resumed_from_step"] == 10 and figures["steps"] == 20 and figures["gradient_accumulation"] == 4


def test_a_full_disk_while_checkpointing_is_a_clear_error_and_the_run_resumes_from_the_last_good_one(tmp_path, monkeypatch):
    import errno

    from fournil.errors import FournilError

    make_trainer(tmp_path, config(max_steps=10, checkpoint_every=10)).train()
    real_save = ckpt.save_file

    def full(tensors, path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if "optimizer" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(FournilError, match=r"could not write checkpoint .*step_20: No space left on device; make room .* "
                                           r"it resumes from the last complete checkpoint"):
        make_trainer(tmp_path, config(max_steps=20, checkpoint_every=10)).train()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()) == ["step_10"]  # no half-written folder
    monkeypatch.setattr(ckpt, "save_file", real_save)
    assert make_trainer(tmp_path, config(max_steps=20, checkpoint_every=10)).train()["resumed_from_step"] == 10


def test_a_finished_run_resumed_with_nothing_left_to_train_keeps_its_final_scores(tmp_path):
    first = make_trainer(tmp_path, config(max_steps=10, checkpoint_every=10))
    first.evaluator = lambda model: {"fr": 1.25, "en": 2.5}
    assert first.train()["per_language"]["fr"]["bits_per_byte"] == 1.25
    again = make_trainer(tmp_path, config(max_steps=10, log_every=2))  # e.g. the stage resumed for another log_every

    def not_again(model):  # noqa: ANN001, ANN202
        raise AssertionError("no step was trained, so nothing is evaluated again")

    again.evaluator = not_again
    figures = again.train()
    assert figures["resumed_from_step"] == 10
    assert {lang: v["bits_per_byte"] for lang, v in figures["per_language"].items()} == {"fr": 1.25, "en": 2.5}
    assert figures["tokens_per_second"] > 0
    assert figures["tokens_per_second"] == pytest.approx(figures["tokens"] / figures["wall_seconds"], rel=1e-2)


def test_a_checkpoint_of_an_older_fournil_without_wall_time_gives_no_invented_throughput(tmp_path):
    make_trainer(tmp_path, config(max_steps=10, checkpoint_every=10)).train()
    folder = tmp_path / "checkpoints" / "step_10"
    state = json.loads((folder / "state.json").read_text())
    del state["wall_seconds"], state["last_eval"]  # as written before they were recorded
    (folder / "state.json").write_text(json.dumps(state))
    sums = json.loads((folder / "checksums.json").read_text())
    sums["files"]["state.json"] = ckpt._digest(folder / "state.json")
    (folder / "checksums.json").write_text(json.dumps(sums))
    figures = make_trainer(tmp_path, config(max_steps=10)).train()
    assert figures["resumed_from_step"] == 10 and figures["wall_seconds"] is None and figures["tokens_per_second"] is None
    assert figures["mfu"] is None
