"""Fine-tuning: DreamBooth (full and LoRA) and Textual Inversion on the tiny model, saved and reloaded."""

import pytest
import torch

from diffaug.diffusion.dreambooth import DreamBoothWeights, save_dreambooth, train_dreambooth
from diffaug.diffusion.finetune import load_pixels, native_resolution, pick_instances
from diffaug.diffusion.loading import load_pipeline, read_source
from diffaug.diffusion.textual_inversion import EMBEDS_FILE, add_token, fill, save_embeds, train_textual_inversion
from diffaug.errors import DiffaugError
from diffaug.io import write_json
from diffaug.rules import token_of
from helpers import pattern, section

CPU = torch.device("cpu")
QUIET = dict(log=lambda *_: None)


def fresh(tiny_base):
    return load_pipeline(read_source(tiny_base), CPU, torch.float32, "dpm++", base=tiny_base)


@pytest.fixture(scope="module")
def instances(tmp_path_factory, tiny_base):
    folder = tmp_path_factory.mktemp("original") / "seven"
    folder.mkdir()
    for i in range(6):
        pattern(i).save(folder / f"{i:02d}.png")
    files = pick_instances(folder, 3, seed=0, label="seven")
    return load_pixels(files, native_resolution(fresh(tiny_base)))


def generate_one(pipe, prompt: str) -> torch.Tensor:
    out = pipe(
        prompt, num_inference_steps=2, guidance_scale=3.0, output_type="pt", generator=torch.Generator().manual_seed(0)
    )
    return out.images


def test_pick_instances_is_seeded_per_class(tmp_path):
    for c in ("one", "two"):
        (tmp_path / c).mkdir()
        for i in range(10):
            pattern(i).save(tmp_path / c / f"{i:02d}.png")
    first = pick_instances(tmp_path / "one", 4, 0, "one")
    assert first == pick_instances(tmp_path / "one", 4, 0, "one")
    assert [f.name for f in first] != [f.name for f in pick_instances(tmp_path / "two", 4, 0, "two")]
    with pytest.raises(DiffaugError, match="raise split.original_per_class"):
        pick_instances(tmp_path / "one", 11, 0, "one")
    with pytest.raises(DiffaugError, match="no images"):
        pick_instances(tmp_path / "three", 1, 0, "three")


def test_dreambooth_lowers_the_instance_loss_and_reloads(tiny_base, instances, tmp_path):
    params = section("dreambooth", steps=30, lr=1.0e-3, batch_size=2, seed=0)
    pipe = fresh(tiny_base)
    prior = instances.flip(-1)  # stand-in class images: the prior term is part of the loss under test
    record = train_dreambooth(pipe, instances, "a photo of sks seven", prior, "a photo of seven", params, **QUIET)
    assert record["instance_loss_after"] < 0.8 * record["instance_loss_before"]
    assert record["cost"]["steps_per_second"] > 0 and record["cost"]["device"] == "cpu"

    out = tmp_path / "dreambooth" / "seven"
    save_dreambooth(pipe, out, params)
    write_json(out / "trained.json", {"mode": "full"})
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").exists()
    tuned = generate_one(pipe, "a photo of sks seven")
    # A fresh pipeline with the saved weights draws exactly what the trained one draws.
    reloaded = fresh(tiny_base)
    base_image = generate_one(reloaded, "a photo of sks seven")
    DreamBoothWeights(out.parent)(reloaded, "seven")
    assert torch.equal(generate_one(reloaded, "a photo of sks seven"), tuned)
    assert not torch.equal(base_image, tuned)


def test_dreambooth_training_is_deterministic(tiny_base, instances):
    params = section("dreambooth", steps=3, lr=1.0e-3, batch_size=2, seed=1, prior_preservation=False)
    weights = []
    for _ in range(2):
        pipe = fresh(tiny_base)
        train_dreambooth(pipe, instances, "a photo of sks seven", None, "a photo of seven", params, **QUIET)
        weights.append(pipe.unet.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("train_text_encoder, targets", [(True, "attention"), (False, "attention"), (False, "all")])
def test_dreambooth_lora_saves_megabytes_not_a_unet_and_reloads(
    tiny_base, instances, tmp_path, capfd, train_text_encoder, targets
):
    params = section(
        "dreambooth",
        mode="lora",
        lora_rank=4,
        steps=20,
        lora_lr=5.0e-3,
        batch_size=2,
        seed=0,
        train_text_encoder=train_text_encoder,
        lora_targets=targets,
    )
    pipe = fresh(tiny_base)
    base_unet = {k: v.clone() for k, v in fresh(tiny_base).unet.state_dict().items()}
    record = train_dreambooth(pipe, instances, "a photo of sks seven", None, "a photo of seven", params, **QUIET)
    assert record["instance_loss_after"] < record["instance_loss_before"]
    out = tmp_path / "dreambooth" / "seven"
    save_dreambooth(pipe, out, params)
    write_json(out / "trained.json", {"mode": "lora", "train_text_encoder": train_text_encoder})
    files = [f.name for f in out.iterdir()]
    assert files.count("pytorch_lora_weights.safetensors") == 1 and "unet" not in files
    unet_bytes = sum(v.numel() * v.element_size() for v in base_unet.values())
    assert (out / "pytorch_lora_weights.safetensors").stat().st_size < unet_bytes / 5
    tuned = generate_one(pipe, "a photo of sks seven")

    reloaded = fresh(tiny_base)
    switch = DreamBoothWeights(out.parent)
    switch(reloaded, "seven")
    assert torch.allclose(generate_one(reloaded, "a photo of sks seven"), tuned, atol=1e-5)
    switch(reloaded, "seven")  # switching again replaces the adapter instead of stacking a second one
    assert torch.allclose(generate_one(reloaded, "a photo of sks seven"), tuned, atol=1e-5)
    assert "No LoRA keys" not in capfd.readouterr().err  # an expected non-event is not a warning


def test_textual_inversion_changes_only_the_new_token(tiny_base, instances, tmp_path):
    params = section(
        "textual_inversion",
        steps=10,
        lr=5.0e-2,
        batch_size=2,
        num_vectors=2,
        scale_lr=False,
        gradient_accumulation=1,
        seed=0,
    )
    pipe = fresh(tiny_base)
    before = {
        name: {k: v.clone() for k, v in getattr(pipe, name).state_dict().items()}
        for name in ("unet", "vae", "text_encoder")
    }
    vocab = len(pipe.tokenizer)
    token = token_of("seven")
    record, learned = train_textual_inversion(pipe, instances, "seven", params, **QUIET)
    assert (
        learned.shape == (2, pipe.text_encoder.config.hidden_size) and record["trainable_parameters"] == learned.numel()
    )
    for name in ("unet", "vae"):
        after = getattr(pipe, name).state_dict()
        assert all(torch.equal(before[name][k], after[k]) for k in after), f"{name} changed"
    text_after = pipe.text_encoder.state_dict()
    for k, v in text_after.items():
        if k.endswith("token_embedding.weight"):
            assert torch.equal(v[:vocab], before["text_encoder"][k])  # every old row byte-identical
            init = before["text_encoder"][k][pipe.tokenizer("seven", add_special_tokens=False).input_ids].mean(0)
            assert not torch.allclose(v[vocab:], init.expand(2, -1))  # the new rows learned
        else:
            assert torch.equal(v, before["text_encoder"][k]), f"text encoder {k} changed"

    # The saved embedding loads with diffusers' own loader into a fresh pipeline and generates.
    folder = tmp_path / "seven"
    folder.mkdir()
    save_embeds(folder / EMBEDS_FILE, token, learned)
    prompt = f"a photo of the digit {token}"
    tuned = generate_one(pipe, prompt)  # the pipeline writes <seven> as "<seven> <seven>_1" itself
    reloaded = fresh(tiny_base)
    reloaded.load_textual_inversion(
        str(folder), token=token, weight_name=EMBEDS_FILE, use_safetensors=True, local_files_only=True
    )
    assert torch.allclose(generate_one(reloaded, prompt), tuned, atol=1e-5)


def test_textual_inversion_init_reg_keeps_the_token_near_its_word(tiny_base, instances):
    def drift(init_reg: float) -> float:
        params = section(
            "textual_inversion",
            steps=10,
            lr=5.0e-2,
            batch_size=2,
            scale_lr=False,
            gradient_accumulation=1,
            init_reg=init_reg,
            templates=["a photo of the {} digit {class}"],
        )
        pipe = fresh(tiny_base)
        word = pipe.text_encoder.get_input_embeddings().weight[
            pipe.tokenizer("seven", add_special_tokens=False).input_ids
        ]
        word = word.detach().clone()
        _, learned = train_textual_inversion(pipe, instances, "seven", params, **QUIET)
        return (learned - word).norm().item()

    free, held = drift(0.0), drift(100.0)
    assert held < 0.5 * free
    assert fill("a photo of the {} digit {class}", "<seven>", "seven") == "a photo of the <seven> digit seven"


def test_add_token_refuses_a_token_the_model_knows(tiny_base):
    pipe = fresh(tiny_base)
    add_token(pipe, "<seven>", 1, "seven")
    with pytest.raises(DiffaugError, match="already in the base model's vocabulary"):
        add_token(pipe, "<seven>", 1, "seven")


def test_8bit_adam_and_fp16_on_the_cpu_fail_with_a_sentence(tiny_base, instances):
    from diffaug.diffusion.finetune import accelerator, check_8bit_adam

    with pytest.raises(DiffaugError, match="needs a CUDA GPU"):
        check_8bit_adam(True, "cpu")
    check_8bit_adam(False, "cpu")
    with pytest.raises(DiffaugError, match="fp16 needs a CUDA GPU"):
        accelerator("fp16", 1, "cpu")
    assert accelerator("auto", 1, "cpu").mixed_precision == "no"
