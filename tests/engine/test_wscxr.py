"""WSCXR: its steps against small hand-computed examples, and what only WSCXR does with a trained run.

Export parity, finite scores, stop/resume and the calibration hold-out are the shared conformance
suite's (test_method_conformance.py), which gives WSCXR the abnormal folder its roles declare.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrscreen.engine.datasets import DataError, TrainingData, from_folders
from cxrscreen.engine.methods import registry
from cxrscreen.engine.methods.wscxr import Config
from cxrscreen.engine.methods.wscxr.recipe import draw_mixing, hinge_loss, mine_prototypes, mix, read_state_dict
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.synth import write_study
from cxrscreen.engine.train import read_run, run_training
from cxrscreen.models.wscxr import Discriminator, GaussianBlur, WSCXRScorer, neighbourhood_mean

STUDY = dict(size=64, formats=("png",), variation=0.5, marker=False)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------- the method's steps, by hand
def test_neighbourhood_mean_counts_the_zero_padding():
    ones = torch.ones(1, 1, 3, 3)
    got = neighbourhood_mean(ones, 3)[0, 0]
    # a corner sees 4 of its 9 window cells inside the grid, an edge 6, the centre 9
    assert torch.allclose(got, torch.tensor([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9)
    grid = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert torch.allclose(neighbourhood_mean(grid, 3)[0, 0, 1, 1], grid.mean())  # the centre: every cell
    assert torch.equal(neighbourhood_mean(grid, 1), grid)  # p = 1: no aggregation
    with pytest.raises(ValueError, match="odd"):
        neighbourhood_mean(grid, 4)


def test_mining_keeps_the_features_farthest_from_the_normal_bank():
    bank = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    abnormal = torch.tensor([[0.0, 1.0], [5.0, 0.0], [10.0, 3.0], [20.0, 0.0]])  # 1-NN distances 1, 5, 3, 10
    prototypes, kept = mine_prototypes(abnormal, bank, 0.5)
    assert kept.tolist() == [3, 1] and torch.equal(prototypes, abnormal[[3, 1]])
    # floor(0.2 * 4) = 0: at least one prototype is kept
    assert mine_prototypes(abnormal, bank, 0.2)[1].tolist() == [3]
    # equal distances: the earlier feature first
    assert mine_prototypes(torch.tensor([[0.0, 2.0], [0.0, -2.0]]), bank[:1], 0.5)[1].tolist() == [0]


def test_linear_mixing_by_hand():
    normal = torch.tensor([[0.0, 0.0], [4.0, 8.0]])
    prototypes = torch.tensor([[10.0, 20.0], [2.0, 2.0]])
    got = mix(normal, prototypes, torch.tensor([0, 1]), torch.tensor([[0.25], [1.0]]))
    # 0.25 * (10, 20) + 0.75 * (0, 0); alpha 1: the prototype itself
    assert torch.allclose(got, torch.tensor([[2.5, 5.0], [2.0, 2.0]]))


def test_mixing_draws_alpha_in_range_and_one_prototype_per_feature():
    g = torch.Generator().manual_seed(0)
    index, alpha = draw_mixing(1000, 3, g, (0.1, 1.0))
    assert index.shape == (1000,) and set(index.tolist()) == {0, 1, 2}
    assert alpha.shape == (1000, 1) and 0.1 <= float(alpha.min()) and float(alpha.max()) <= 1.0
    assert float(alpha.min()) < 0.15 and float(alpha.max()) > 0.95  # the whole range is drawn
    _, no_mix = draw_mixing(5, 3, g, (0.1, 1.0), mixing=False)
    assert torch.equal(no_mix, torch.ones(5, 1))
    again = draw_mixing(1000, 3, torch.Generator().manual_seed(0), (0.1, 1.0))
    assert torch.equal(again[0], index) and torch.equal(again[1], alpha)  # the generator's draws only


def test_hinge_loss_by_hand():
    # normal: relu(0.5 - 1) = 0, relu(0.5 - 0) = 0.5 -> 0.25; synthetic: relu(0.5 - 1) = 0, relu(0.5 + 0.5) = 1 -> 0.5
    loss = hinge_loss(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.5]), 0.5)
    assert float(loss) == pytest.approx(0.75)


def test_blur_is_scipys_gaussian_filter():
    ndimage = pytest.importorskip("scipy.ndimage")
    maps = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
    for sigma in (0.5, 1.0, 2.5):
        want = np.stack([ndimage.gaussian_filter(m, sigma, mode="reflect") for m in maps.numpy()])
        np.testing.assert_allclose(GaussianBlur(sigma, 16)(maps).numpy(), want, atol=1e-6)
    with pytest.raises(ValueError, match="larger than"):
        GaussianBlur(4.0, 16)  # radius 16 does not fit a 16-px map


def test_discriminator_heads_and_the_scorer_takes_the_patch_maximum():
    linear = Discriminator(4, "linear")
    assert [p.shape for p in linear.parameters()] == [torch.Size([1, 4])]  # one bias-free Linear
    mlp = Discriminator(4, "mlp", hidden=8).eval()
    assert mlp(torch.zeros(2, 3, 4)).shape == (2, 3)
    with torch.no_grad():
        linear.tail.weight.copy_(torch.tensor([[-1.0, 0.0, 0.0, 0.0]]))  # normality = -channel 0

    class Grid(torch.nn.Module):  # a 2 x 2 grid: channel 0 is the image's mean over each quadrant
        def forward(self, x):
            q = torch.nn.functional.avg_pool2d(x, x.shape[-1] // 2)
            return torch.cat([q, torch.zeros(x.shape[0], 3, 2, 2)], dim=1)

    scorer = WSCXRScorer(Grid(), linear, neighbourhood=1, size=8, blur_sigma=0.5).eval()
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, :4, 4:] = 3.0  # one bright quadrant
    with torch.no_grad():
        score, heatmap = scorer(x)
    assert float(score[0]) == pytest.approx(3.0) and heatmap.shape == (1, 8, 8)
    assert heatmap[0, :4, 4:].mean() > heatmap[0, 4:, :4].mean()


# ---------------------------------------------------------------------- settings
def test_presets_hold_the_letters_numbers():
    m = registry()["wscxr"]
    paper = m.config("paper")
    stated = {"backbone": "densenet121", "neighbourhood": 5, "mining_ratio": 0.2, "alpha_min": 0.1, "alpha_max": 1.0,
              "lr": 2e-4, "weight_decay": 1e-5, "batch_size": 8, "epochs": 100, "head": "linear", "margin": 0.5,
              "blur_sigma_256": 4.0, "mining": True, "mixing": True}
    assert {k: getattr(paper, k) for k in stated} == stated and paper.preprocess.size == 256
    assert paper.blur_sigma == 4.0 and m.config("small").blur_sigma == 1.0  # 4 px at 256, scaled
    assert not m.preset("paper").as_published and m.preset("paper").deviations
    assert m.preset("tiny").tests_only and [p.name for p in m.presets][:2] == ["robust", "small"]
    # the default differs from the small preset only in its acquisition-robust preprocessing; every
    # preset scores the image as read, as the letter does (the views helped one encoder seed of three)
    robust, small = m.config("robust").to_dict(), m.config("small").to_dict()
    assert robust.pop("preprocess") == {**small.pop("preprocess"), "crop": "field", "intensity": "equalize"}
    assert robust == small
    assert {m.config(p).test_time_views for p in ("robust", "small", "paper", "tiny")} == {"none"}
    roles = {r.role: (r.requirement, r.min_count) for r in m.roles}
    assert roles == {"normal": ("required", 3), "unlabeled": ("optional", 1), "abnormal": ("required", 1)}


@pytest.mark.parametrize("values, message", [
    ({"neighbourhood": 4}, "--neighbourhood must be an odd number"),
    ({"mining_ratio": 0.0}, "--mining-ratio must be > 0"),
    ({"size": 60}, "divisible by its patch size 8"),
    ({"backbone": "densenet121", "encoder": "/x"}, "cannot be used with the timm backbone"),
])
def test_bad_settings_name_their_option(values, message):
    from cxrscreen.engine.methods.base import SettingsError

    with pytest.raises(SettingsError, match=message):
        registry()["wscxr"].config("small", **values)


# ---------------------------------------------------------------------- trained runs (tiny preset)
@pytest.fixture(scope="module")
def chests(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wscxr")
    write_study(root / "normal", 22, 0, seed=31, **STUDY)
    write_study(root / "abnormal", 0, 4, seed=32, **STUDY, lesion_strength=2.0)
    write_study(root / "unlabeled", 3, 3, seed=33, **STUDY)
    for f in ("normal", "abnormal", "unlabeled"):
        (root / f / "labels.csv").unlink()
    return {f: root / f for f in ("normal", "abnormal", "unlabeled")}


def _tiny(**values) -> Config:
    config = registry()["wscxr"].config("tiny")
    return Config.from_dict({**config.to_dict(), "checkpoint_every_s": 0.0, "device": "cpu", **values})


@pytest.fixture(scope="module")
def trained(chests, tmp_path_factory) -> tuple[Path, TrainingData]:
    data = from_folders(chests["normal"], None, abnormal_dir=chests["abnormal"])
    run = tmp_path_factory.mktemp("wscxr_run") / "run"
    torch.set_num_threads(1)
    assert run_training("wscxr", _tiny(), data, run, Progress("none")).status == "done"
    return run, data


def test_mining_on_a_trained_run(trained):
    run, _ = trained
    summary = read_run(run)
    assert summary["status"] == "done" and summary["data"]["roles"] == {"normal": 22, "unlabeled": 0, "abnormal": 4}
    saved = torch.load(run / "model.pt", weights_only=True)
    # 4 abnormal images x a 4 x 4 grid = 64 patch features, r = 0.2 -> 12 prototypes; 20 training normals in the bank
    assert saved["mining"]["abnormal_patches"] == 64 and saved["prototypes"].shape[0] == 12
    assert saved["mining"]["bank"] == 20 * 16


def test_a_reused_encoder_is_the_other_runs_and_unlabeled_images_only_pretrain(trained, chests, tmp_path):
    run, data = trained
    reuse = tmp_path / "reuse"
    assert run_training("wscxr", _tiny(encoder=str(run), epochs=1), data, reuse, Progress("none")).status == "done"
    a, b = (torch.load(r / "model.pt", weights_only=True) for r in (run, reuse))
    assert all(torch.equal(a["encoder"][k], b["encoder"][k]) for k in a["encoder"])
    assert b["summaries"]["pretrain"] is None and b["backbone_source"]["run"] == str(run.resolve())
    other = {**_tiny().preprocess.to_dict(), "intensity": "equalize"}  # an encoder that saw other inputs: refused
    with pytest.raises(DataError, match="other preprocessing"):
        run_training("wscxr", _tiny(encoder=str(run), epochs=1, preprocess=other), data, tmp_path / "eq",
                     Progress("none"))
    with_unlabeled = from_folders(chests["normal"], chests["unlabeled"], abnormal_dir=chests["abnormal"])
    assert run_training("wscxr", _tiny(epochs=1), with_unlabeled, tmp_path / "u", Progress("none")).status == "done"
    c = torch.load(tmp_path / "u" / "model.pt", weights_only=True)
    assert c["backbone_source"]["mae"] == "pre-trained on normal + unlabeled"
    assert not torch.equal(c["encoder"]["blocks.0.attn.qkv.weight"], a["encoder"]["blocks.0.attn.qkv.weight"])


def test_a_run_asking_for_the_framing_views_exports_a_file_that_scores_their_mean(trained, chests, tmp_path):
    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.detector import Detector, NormalCalibration
    from cxrscreen.engine.export import VIEW_SETS, export_run
    from cxrscreen.models.views import ViewAverage

    run, data = trained
    viewed = tmp_path / "viewed"  # the same encoder, one epoch, the views asked for (--test-time-views framing)
    assert run_training("wscxr", _tiny(encoder=str(run), epochs=1, test_time_views="framing"), data, viewed,
                        Progress("none")).status == "done"
    assert read_run(viewed)["config"]["test_time_views"] == "framing"
    det = Detector(export_run(viewed, tmp_path / "v.onnx").path, provider="cpu")
    assert det.meta.score_type == "max, mean of 7 views"
    assert det.meta.training["test_time_views"]["name"] == "framing"
    images = load_images(sorted(chests["unlabeled"].glob("*.png")), det.preprocess_spec)
    scorer = registry()["wscxr"].hooks().load_scorer(viewed, "max").eval()
    with torch.no_grad():
        want = ViewAverage(scorer, VIEW_SETS["framing"], det.preprocess_spec.output_range).eval()(
            torch.from_numpy(images))[0].numpy()
        as_read = scorer(torch.from_numpy(images))[0].numpy()
    np.testing.assert_allclose(det.run(images).scores, want, atol=1e-4)
    assert not np.allclose(want, as_read, atol=1e-3)  # the views change the score
    # calibrated again on the same held-out normals, with the views' scores (the run's own: as read)
    own = NormalCalibration.from_dict(json.loads((viewed / "calibration.json").read_text()))
    assert det.calibration.n_normals == own.n_normals
    assert det.calibration.threshold_at_specificity(0.95) != own.threshold_at_specificity(0.95)


class NotTensors:
    """A pickled object other than tensors: a state-dict reader must refuse it, never unpickle it."""


def test_a_timm_backbone_from_a_local_state_dict(trained, tmp_path):
    import timm

    _, data = trained
    torch.manual_seed(0)
    sd = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save({"state_dict": sd}, tmp_path / "resnet18.pth")
    config = _tiny(backbone="resnet18", backbone_layer="layer3", backbone_checkpoint=str(tmp_path / "resnet18.pth"),
                   epochs=1)
    assert run_training("wscxr", config, data, tmp_path / "run", Progress("none")).status == "done"
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert saved["channels"] == 256 and "encoder" not in saved  # layer3 of ResNet18: 256 channels, no MAE
    key = "body.net.conv1.weight"
    assert torch.equal(saved["timm_backbone"][key], sd["conv1.weight"])
    torch.save({"x": NotTensors()}, tmp_path / "evil.pth")
    with pytest.raises(DataError, match="not a readable state dict"):
        read_state_dict(tmp_path / "evil.pth")


def test_the_encoder_of_an_msacl_run_is_the_backbone_and_exports(trained, chests, tmp_path):
    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.export import export_run
    from cxrscreen.engine.methods.wscxr.recipe import load_scorer

    _, data = trained
    msacl = tmp_path / "msacl"
    assert run_training("msacl", registry()["msacl"].config("tiny", device="cpu", size=32),
                        from_folders(chests["normal"], None), msacl, Progress("none")).status == "done"
    run = tmp_path / "run"
    assert run_training("wscxr", _tiny(backbone="msacl", encoder=str(msacl.resolve()), epochs=1), data, run,
                        Progress("none")).status == "done"
    encoder = torch.load(msacl / "model.pt", weights_only=True)["encoder"]
    saved = torch.load(run / "model.pt", weights_only=True)
    # layer2 of the one-channel ResNet18: 128 channels on a 4 x 4 grid at 32 px; the weights are the MSACL run's
    assert saved["channels"] == 128 and saved["mining"]["abnormal_patches"] == 4 * 16 and "encoder" not in saved
    assert torch.equal(saved["timm_backbone"]["body.net.conv1.weight"], encoder["conv1.weight"])
    assert torch.equal(saved["timm_backbone"]["body.net.layer2.1.bn2.running_var"], encoder["layer2.1.bn2.running_var"])
    assert saved["backbone_source"]["msacl_run"]["run"] == str(msacl.resolve()) and saved["summaries"]["pretrain"] is None
    assert "ResNet18 (MSACL run) layer2" in registry()["wscxr"].describe(Config.from_dict(saved["config"]))["backbone"]
    export_run(run, tmp_path / "d.onnx")
    det = Detector(tmp_path / "d.onnx", provider="cpu")
    images = load_images(sorted(chests["abnormal"].glob("*.png")), det.preprocess_spec)
    with torch.no_grad():
        ref, _ = load_scorer(run)(torch.from_numpy(images))
    np.testing.assert_allclose(det.run(images).scores, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_an_msacl_backbone_needs_an_msacl_run_with_the_same_preprocessing(trained, chests, tmp_path):
    run, data = trained
    m = registry()["wscxr"]
    problems = m.check(_tiny(backbone="msacl"), {"normal": 22, "abnormal": 4})
    assert [p.option for p in problems if p.level == "error"] == ["--encoder"]
    with pytest.raises(ValueError, match="backbone_checkpoint is for a timm"):
        _tiny(backbone="msacl", encoder=str(run), backbone_checkpoint=str(run / "model.pt"))
    with pytest.raises(DataError, match="not a one-channel ResNet18"):  # a WSCXR run (its MAE) is no MSACL run
        run_training("wscxr", _tiny(backbone="msacl", encoder=str(run)), data, tmp_path / "a", Progress("none"))
    msacl = tmp_path / "msacl40"
    assert run_training("msacl", registry()["msacl"].config("tiny", device="cpu", size=40, epochs=1),
                        from_folders(chests["normal"], None), msacl, Progress("none")).status == "done"
    with pytest.raises(DataError, match="other preprocessing"):
        run_training("wscxr", _tiny(backbone="msacl", encoder=str(msacl)), data, tmp_path / "b", Progress("none"))


def test_cli_requires_the_abnormal_folder_and_check_reports_it(chests, tmp_path, capsys):
    from cxrscreen.engine.cli import main as cli

    args = ["train", "--method", "wscxr", "--preset", "tiny", "--normal", str(chests["normal"]), "--out",
            str(tmp_path / "r"), "--progress", "json", "--check"]
    assert cli(args) == 1
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert event["problems"][0]["option"] == "--abnormal" and "at least 1" in event["problems"][0]["message"]
    assert cli([*args, "--abnormal", str(chests["abnormal"])]) == 0
    capsys.readouterr()
    code = cli([*args, "--backbone", "densenet121", "--abnormal", str(chests["abnormal"])])
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    errors = [p["option"] for p in event["problems"] if p["level"] == "error"]
    assert code == 1 and errors == ["--backbone-checkpoint"]  # a timm backbone needs its weights
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------- shots from a split file
FEWSHOT_PATIENTS = (1, 1, 1, 2, 2, 3, 3)  # 7 few-shot anomalies of 3 patients


@pytest.fixture(scope="module")
def split(chests, tmp_path_factory) -> Path:
    """A split file in the development protocol's format over the synthetic chests: the 22 normals
    known, a 500-entry unlabeled pool (repeats of the 6 unlabeled images: only its size matters
    here) and ``fewshot.abnormal`` = 7 abnormal images of 3 patients, named as Kermany's."""
    import shutil

    root = tmp_path_factory.mktemp("split")
    for part in ("normal", "unlabeled"):
        shutil.copytree(chests[part], root / part)
    write_study(root / "fewshot", 0, len(FEWSHOT_PATIENTS), seed=34, **STUDY, lesion_strength=2.0)
    (root / "fewshot" / "labels.csv").unlink()
    fewshot = []
    for i, (f, patient) in enumerate(zip(sorted((root / "fewshot").glob("*.png")), FEWSHOT_PATIENTS)):
        f.rename(root / "fewshot" / f"person{patient}_bacteria_{i}.png")
        fewshot.append(f"fewshot/person{patient}_bacteria_{i}.png")
    pool = [f"unlabeled/{p.name}" for p in sorted((root / "unlabeled").glob("*.png"))] * 84
    (root / "splits").mkdir()
    path = root / "splits" / "dev.json"
    known = [f"normal/{p.name}" for p in sorted((root / "normal").glob("*.png"))]
    path.write_text(json.dumps({"train": {"known_normal": known},
                                "unlabeled_pool": {"normal": pool[:500], "abnormal": pool[:500]},
                                "fewshot": {"abnormal": fewshot}, "dev_test": {"normal": [], "abnormal": []}}))
    return path


def test_shots_from_a_split_are_drawn_across_patients_nested_and_seeded(split):
    from cxrscreen.engine.datasets import from_split, patient_of

    every = from_split(split, 0.6, shots=7, shots_seed=0).abnormal
    assert sorted(p.name for p in every) == sorted(p.name for p in (split.parent.parent / "fewshot").glob("*.png"))
    # one image per patient in turn (patients 1, 2, 3 have 3, 2, 2 images): the first 3 shots are the 3 patients,
    # and patient 1's third image comes last
    assert len({patient_of(p) for p in every[:3]}) == 3 and patient_of(every[-1]) == "person1"
    for k in range(1, 8):  # nested
        assert from_split(split, 0.6, shots=k, shots_seed=0).abnormal == every[:k]
    assert from_split(split, 0.6, shots=7, shots_seed=0).abnormal == every  # seeded
    assert len({tuple(from_split(split, 0.6, shots=7, shots_seed=s).abnormal) for s in range(5)}) > 1
    data = from_split(split, 0.6, shots=4, shots_seed=2)
    assert data.summary()["anomalies"] == {"from": "split fewshot.abnormal", "k": 4, "of": 7, "seed": 2,
                                           "draw": "across patients, nested"}
    assert not set(data.abnormal) & set(data.normal_train + data.normal_calibration + data.unlabeled)
    plain = from_split(split, 0.6)
    assert plain.abnormal == [] and "anomalies" not in plain.summary()
    with pytest.raises(DataError, match="at most 7"):
        from_split(split, 0.6, shots=8)
    with pytest.raises(ValueError, match="at least 1"):
        from_split(split, 0.6, shots=0)
    no_fewshot = split.with_name("no_fewshot.json")
    no_fewshot.write_text(json.dumps({k: v for k, v in json.loads(split.read_text()).items() if k != "fewshot"}))
    with pytest.raises(DataError, match="no fewshot.abnormal"):
        from_split(no_fewshot, 0.6, shots=2)


def test_train_split_shots_draws_records_and_keeps_the_anomalies_out_of_calibration(split, trained, tmp_path):
    from cxrscreen.engine.cli import main as cli
    from cxrscreen.engine.datasets import draw_across_patients, load_images
    from cxrscreen.engine.detector import NormalCalibration
    from cxrscreen.engine.export import export_run

    run = tmp_path / "run"
    # the shared encoder of the trained fixture: no pre-training on the 500 pool entries
    assert cli(["train", "--method", "wscxr", "--preset", "tiny", "--split", str(split), "--shots", "3", "--seed", "1",
                "--encoder", str(trained[0]), "--epochs", "1", "--threads", "1", "--progress", "none",
                "--out", str(run)]) == 0
    data = TrainingData.from_json(json.loads((run / "data.json").read_text()))
    fewshot = json.loads(split.read_text())["fewshot"]["abnormal"]
    assert [p.name for p in data.abnormal] == [Path(p).name for p in draw_across_patients(fewshot, 1)[:3]]
    training = export_run(run, tmp_path / "d.onnx").metadata.training
    assert training["abnormal"] == 3 and training["anomalies"] == {
        "from": "split fewshot.abnormal", "k": 3, "of": 7, "seed": 1, "draw": "across patients, nested"}
    # the calibration is the held-out normals' scores and nothing else: no labelled anomaly among them
    calibration = NormalCalibration.from_dict(json.loads((run / "calibration.json").read_text()))
    assert not {p.resolve() for p in data.abnormal} & {p.resolve() for p in data.normal_calibration}
    images = load_images(data.normal_calibration, Config.from_dict(read_run(run)["config"]).preprocess)
    with torch.no_grad():
        held_out = registry()["wscxr"].hooks().load_scorer(run)(torch.from_numpy(images))[0].numpy()
    np.testing.assert_allclose(calibration.normal_scores, np.sort(held_out), rtol=1e-6, atol=1e-7)


def test_split_shots_usage_errors(split, tmp_path, capsys):
    from cxrscreen.engine.cli import main as cli

    base = ["train", "--preset", "tiny", "--progress", "none", "--out", str(tmp_path / "r")]
    cases = [(["--method", "wscxr", "--split", str(split)], "give --shots K"),
             (["--method", "ddad", "--split", str(split), "--shots", "2"], "DDAD does not use confirmed-abnormal"),
             (["--method", "wscxr", "--normal", str(split.parent), "--shots", "2"], "give --split JSON"),
             (["--method", "wscxr", "--split", str(split), "--shots", "0"], "must be an integer >= 1")]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_:
            cli([*base, *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err, args
    # more shots than the list holds: --check names --shots
    assert cli([*base, "--method", "wscxr", "--split", str(split), "--shots", "9", "--check", "--progress", "json"]) == 1
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert event["problems"][0]["option"] == "--shots" and "at most 7" in event["problems"][0]["message"]
    assert not (tmp_path / "r").exists()


def test_a_split_gives_a_one_class_method_no_unlabeled_images(split, tmp_path, capsys):
    """--split draws D_u for the methods that use it; a one-class method gets none (it used to be refused as if
    --unlabeled had been given)."""
    from cxrscreen.engine.cli import main as cli

    base = ["train", "--preset", "tiny", "--split", str(split), "--check", "--progress", "json", "--out",
            str(tmp_path / "r")]
    assert cli([*base, "--method", "msacl"]) == 0
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert event["ok"] and not [p for p in event["problems"] if "unlabeled" in p["option"] + p["message"]]
    assert cli([*base, "--method", "ddad"]) == 0  # a method that uses D_u still gets it: no "needs unlabeled" error
    assert "unlabeled" not in capsys.readouterr().out


def test_the_anomalies_source_says_folder_or_reader_marks(chests, tmp_path):
    from cxrscreen.app.reader_sets import export_reader_sets

    folder = from_folders(chests["normal"], None, abnormal_dir=chests["abnormal"])
    assert folder.summary()["anomalies"] == {"from": "folder", "k": 4}
    export_reader_sets([], sorted(chests["abnormal"].glob("*.png")), tmp_path / "sets", "links", reader="A. Reader")
    marked = from_folders(chests["normal"], None, abnormal_dir=tmp_path / "sets" / "confirmed_abnormal")
    assert marked.summary()["anomalies"] == {"from": "reader marks", "k": 4}
    assert "anomalies" not in from_folders(chests["normal"], chests["unlabeled"]).summary()  # no abnormal images
