"""scripts/merge_adapters.py and `merge_checkpoints`: tensors merged by the rules, refusals, eval.py on the result."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from tests.helpers import CONFIGS, ROOT, evaluate_in_process, run_script, tiny_seg_overrides
from vitadapter.checkpoint import classify_key
from vitadapter.export import load_trained_task
from vitadapter.multitask.merging import MergeError, lora_scaling, merge_checkpoints, save_merged
from vitadapter.run.build import build_datamodule_and_task

DROPPED = {"optimizer_states", "lr_schedulers", "loops", "callbacks"}


def train_and_save(data_root: Path, out_dir: Path, method: list[str], seeds: list[int]) -> list[Path]:
    """Real Lightning checkpoints of one task after a 1-step fit, its trainable tensors randomised per seed."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=demo_seg", *tiny_seg_overrides(data_root), *method])
    torch.manual_seed(0)
    datamodule, task = build_datamodule_and_task(cfg)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out_dir)
    trainer.fit(task, datamodule=datamodule)
    paths = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in task.parameters():
                if param.requires_grad:
                    param.add_(0.1 * torch.randn(param.shape, generator=generator))
        paths.append(out_dir / f"{method[0].rpartition('=')[2]}_{seed}.ckpt")
        trainer.save_checkpoint(paths[-1])
    return paths


@pytest.fixture(scope="module")
def checkpoints(seg_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Two checkpoints each of LoRA (r 8), bottleneck, SSF and VPT; one LoRA of rank 4 with rsLoRA."""
    out = tmp_path_factory.mktemp("merge_checkpoints")
    made = {method: train_and_save(seg_data_root, out, [f"model/adapter={method}"], [1, 2])
            for method in ("lora", "bottleneck", "ssf", "vpt")}
    made["rslora"] = train_and_save(seg_data_root, out, ["model/adapter=lora", "model.adapter.r=4",
                                                         "model.adapter.options={use_rslora:true}"], [3])
    return made


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def method_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if classify_key(k).part == "adapter"}


def encoder_output(task: L.LightningModule) -> dict[str, torch.Tensor]:
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return dict(task.encoder(image))


def test_lora_merge_is_the_weighted_sum_of_the_updates(checkpoints: dict[str, list[Path]], tmp_path: Path) -> None:
    """Ranks 8, 8 and 4 (rsLoRA), weights not summing to 1: one LoRA of rank 20 computing W + sum w_i s_i B_i A_i."""
    paths, weights = [*checkpoints["lora"], *checkpoints["rslora"]], [0.7, 0.5, -0.3]
    merged = merge_checkpoints(paths, weights)
    adapter = merged["vitadapter"]["config"]["model"]["adapter"]
    assert (adapter["r"], adapter["alpha"]) == (20, 20.0)  # rank 8 + 8 + 4, alpha / r = 1 kept
    provenance = [{"path": str(p.resolve()), "weight": w} for p, w in zip(paths, weights)]
    assert merged["vitadapter"]["merged_from"] == provenance
    assert not DROPPED & set(merged) and "optimizer_states" in load(paths[0])
    output = save_merged(merged, tmp_path / "merged.ckpt")
    actual = encoder_output(load_trained_task(output))

    sources = [load(p) for p in paths]
    expected_task = load_trained_task(paths[0])
    vit = expected_task.encoder.backbone.vit
    wrapped = [name for name, _ in vit.named_modules() if f"encoder.backbone.vit.{name}.lora_A.default.weight"
               in sources[0]["state_dict"]]
    assert len(wrapped) == 16
    with torch.no_grad():
        for name in wrapped:
            key = f"encoder.backbone.vit.{name}.lora_{{}}.default.weight"
            delta = sum(w * lora_scaling(s["vitadapter"]["config"]["model"]["adapter"])
                        * s["state_dict"][key.format("B")] @ s["state_dict"][key.format("A")]
                        for w, s in zip(weights, sources))
            layer = vit.get_submodule(name)
            layer.base_layer.weight += delta
            layer.lora_B["default"].weight.zero_()
    expected = encoder_output(expected_task)
    assert actual.keys() == expected.keys()
    for level in expected:
        torch.testing.assert_close(actual[level], expected[level], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "bottleneck"])
def test_one_checkpoint_with_weight_one_is_reproduced_bit_for_bit(method: str,
                                                                  checkpoints: dict[str, list[Path]]) -> None:
    path = checkpoints[method][0]
    original, merged = load(path), merge_checkpoints([path], [1.0])
    assert merged["state_dict"].keys() == original["state_dict"].keys()
    assert all(torch.equal(merged["state_dict"][k], v) for k, v in original["state_dict"].items())
    assert merged["vitadapter"]["config"] == original["vitadapter"]["config"]


@pytest.mark.parametrize("method", ["bottleneck", "ssf", "vpt"])
def test_averaged_methods_take_the_weighted_mean_and_the_chosen_neck_and_heads(
        method: str, checkpoints: dict[str, list[Path]], tmp_path: Path) -> None:
    first, second = checkpoints[method]
    merged = merge_checkpoints([first, second], [0.25, 0.75], head_from=str(second))
    a, b = load(first)["state_dict"], load(second)["state_dict"]
    own = method_tensors(a)
    assert own and (method != "vpt" or "encoder.hooks.prompts" in own)
    for key, value in merged["state_dict"].items():
        if key in own:
            assert torch.equal(value, (0.25 * a[key].double() + 0.75 * b[key].double()).to(a[key].dtype)), key
        else:  # neck and heads of the second checkpoint
            assert torch.equal(value, b[key]), key
    assert merged["vitadapter"]["neck_and_heads_from"] == str(second.resolve())
    load_trained_task(save_merged(merged, tmp_path / "merged.ckpt"))  # builds and loads strictly, as predict.py


def edited(path: Path, out: Path, edit: Callable[[dict], None]) -> Path:
    checkpoint = load(path)
    edit(checkpoint)
    torch.save(checkpoint, out)
    return out


def _set_adapter(**fields: object) -> Callable[[dict], None]:
    return lambda c: c["vitadapter"]["config"]["model"]["adapter"].update(fields)


def _shrink_first_method_tensor(checkpoint: dict) -> None:
    key = next(k for k in checkpoint["state_dict"] if classify_key(k).part == "adapter")
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key][:-1]


REFUSALS = {  # name -> (method, edit of a copy of its first checkpoint or None, weights, message)
    "method": ("lora", None, None, r"train different methods: model.adapter.name='bottleneck' vs 'lora'"),
    "hyper-parameter": ("bottleneck", _set_adapter(bottleneck_dim=16), None,
                        r"differ in model.adapter.bottleneck_dim: 64 vs 16; it changes what the method computes"),
    "shape": ("bottleneck", _shrink_first_method_tensor, None,
              r"differ in the shape of encoder.backbone.vit.blocks.0.drop_path1.adapter.down.weight: \(64, 64\)"),
    "fingerprint": ("bottleneck", lambda c: c["vitadapter"].update(backbone_fingerprint="f" * 64), None,
                    r"trained on different frozen ViTs: backbone_fingerprint [0-9a-f]{16} \(test_vit\) vs ffff"),
    "weights count": ("bottleneck", None, [0.2, 0.3, 0.5], r"3 weights for 2 checkpoints .* one weight per checkpoint"),
    "weights sum": ("bottleneck", None, [1.0, 0.5], r"weights \[1.0, 0.5\] sum to 1.5: .* must sum to 1"),
    "dora": ("lora", _set_adapter(name="dora"), None, r"model.adapter.name='dora' cannot be merged: DoRA divides"),
    "peft option": ("lora", _set_adapter(options={"rank_pattern": {"qkv": 4}}), None,
                    r"model.adapter.options.rank_pattern has no merge rule"),
    "unknown method": ("lora", _set_adapter(name="fusion"), None, r"model.adapter.name='fusion' has no merge rule"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_mismatches_are_refused_naming_checkpoints_and_field(case: str, checkpoints: dict[str, list[Path]],
                                                             tmp_path: Path) -> None:
    method, edit, weights, message = REFUSALS[case]
    first = checkpoints["bottleneck"][0]
    if case == "method":
        second = checkpoints["lora"][0]
    elif edit is None:
        second = checkpoints[method][1]
    else:
        second = edited(checkpoints[method][0], tmp_path / "edited.ckpt", edit)
        first = checkpoints[method][1]
    paths = [first, second] if case not in ("dora", "peft option", "unknown method") else [second, second]
    with pytest.raises(MergeError, match=message) as refused:
        merge_checkpoints(paths, weights)
    if case in ("method", "hyper-parameter", "shape", "fingerprint"):
        assert f"{first} and {second}" in str(refused.value)
    else:
        assert str(second) in str(refused.value) or "weights" in case


def test_head_from_must_be_one_of_the_checkpoints(checkpoints: dict[str, list[Path]]) -> None:
    paths = checkpoints["bottleneck"]
    with pytest.raises(MergeError, match=r"head_from='elsewhere.ckpt' is not one of the merged checkpoints"):
        merge_checkpoints(paths, head_from="elsewhere.ckpt")
    with pytest.raises(MergeError, match=r"head_from=2: give 0..1"):
        merge_checkpoints(paths, head_from=2)


def test_cli_merge_of_a_checkpoint_with_itself_evaluates_as_the_original(seg_demo_run: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """Convpass at 0.5/0.5 with itself: the same tensors bit for bit, so eval.py gives the training run's figures
    (the script's main() and the evaluation run in this process)."""
    checkpoint, output = seg_demo_run / "checkpoints" / "last.ckpt", tmp_path / "merged.ckpt"
    run_script("scripts/merge_adapters.py", "--out", str(output), str(checkpoint), str(checkpoint),
               "--weights", "0.5", "0.5", "--head-from", "1")
    assert "weighted mean of the convpass tensors of last.ckpt x 0.5, last.ckpt x 0.5" in capsys.readouterr().out
    original, merged = load(checkpoint), load(output)
    assert all(torch.equal(merged["state_dict"][k], v) for k, v in original["state_dict"].items())
    assert not DROPPED & set(merged)

    evaluated = evaluate_in_process(output, tmp_path / "eval")
    trained = json.loads((seg_demo_run / "metrics.json").read_text())
    for key in ("val/mIoU", "val/aAcc", "val/mAcc"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-9)


def test_script_arguments_and_errors(checkpoints: dict[str, list[Path]], tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("merge_adapters", ROOT / "scripts" / "merge_adapters.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    first, second = map(str, checkpoints["bottleneck"])
    args = script.parse_args(["--out", "M.ckpt", first, second, "--weights", "0.4", "0.6", "--head-from", second])
    assert (args.checkpoints, args.weights, args.head_from) == ([first, second], [0.4, 0.6], second)
    assert script.parse_args(["--out", "M.ckpt", first, second, "--head-from", "1"]).head_from == 1
    with pytest.raises(SystemExit, match=r"merge_adapters.py: error: 1 weights for 2 checkpoints"):
        script.main(["--out", str(tmp_path / "M.ckpt"), first, second, "--weights", "1"])
    assert not (tmp_path / "M.ckpt").exists()


def test_a_segmentation_and_a_detection_checkpoint_merge_into_a_detector(seg_demo_run: Path, det_demo_run: Path,
                                                                        tmp_path: Path) -> None:
    seg, det = (run / "checkpoints" / "last.ckpt" for run in (seg_demo_run, det_demo_run))
    merged = save_merged(merge_checkpoints([seg, det], [0.5, 0.5], head_from=det), tmp_path / "m.ckpt")
    task = load_trained_task(merged)
    assert type(task).__name__ == "DetectionTask" and task.task_name == "demo_det"
    def named_from_encoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {classify_key(k).name: v for k, v in method_tensors(state).items()}

    seg_tensors, det_tensors = (named_from_encoder(load(path)["state_dict"]) for path in (seg, det))
    state = named_from_encoder(task.state_dict())
    assert len(seg_tensors) == 48 and set(seg_tensors) == set(det_tensors)  # Convpass in both, named from the encoder
    for name, tensor in seg_tensors.items():
        assert torch.equal(state[name], (0.5 * tensor.double() + 0.5 * det_tensors[name].double()).float())
