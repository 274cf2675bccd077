"""The diffusion stages: the base model, prompts, generation, fine-tuning, img2img and filtering."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from diffaug.params.errors import _fail
from diffaug.params.fields import (
    CheckpointEvery,
    Count,
    Device,
    ForwardBatch,
    Guidance,
    ImageSeed,
    Launcher,
    Precision,
    Proportion,
    Section,
    Seed,
    Size8,
    Template,
    Templates,
    _hub_or_folder,
    _non_empty,
    _template,
)


class Base(Section):
    model: str = Field(description="`builtin:tiny` (offline, trained here), a hub id, or a local diffusers folder")
    revision: str = Field(description="hub: branch, tag or commit; pinned to its commit in models/base/source.json")
    tiny_steps: Count = Field(description="builtin:tiny: pretraining steps of the denoiser")
    seed: Seed = Field(description="seed of the built-in model's pretraining")

    @model_validator(mode="after")
    def _model_known(self):
        if self.model.startswith("builtin:"):
            if self.model != "builtin:tiny":
                raise _fail("base.model", self.model, "allowed built-in model: builtin:tiny")
            return self
        try:
            _hub_or_folder(self.model)
        except ValueError:
            raise _fail(
                "base.model",
                self.model,
                "use builtin:tiny, a hub id like "
                "stable-diffusion-v1-5/stable-diffusion-v1-5, or an existing local folder",
            ) from None
        return self


class Prompts(Section):
    templates: Templates = Field(description="one prompt per template and class (`{}` = the class name)")
    llm: Optional[str] = Field(description="optional text-generation model (hub id or folder) that expands prompts")
    llm_revision: str = Field(description="revision of `llm`")
    llm_questions: Templates = Field(description="questions put to `llm` (the paper's GPT-3 templates)")
    llm_per_question: Count = Field(description="answers kept per question and class")
    temperature: float = Field(gt=0, description="sampling temperature of `llm`")
    max_new_tokens: Count = Field(description="length limit of each answer")
    seed: Seed = Field(description="seed of `llm` sampling")


class Generate(Section):
    per_class: Count = Field(description="synthetic images per class of each generated source (paper: 700)")
    scheduler: Literal["dpm++", "lms", "ddim", "pndm", "euler", "euler_a"] = Field(
        description="sampler (the paper: `lms`)"
    )
    steps: Count = Field(description="denoising steps (the paper: 50)")
    guidance: Guidance
    negative_prompt: str = Field(description="negative prompt (empty: none)")
    resolution: Size8 = Field(description="generated side in px; `null` = the model's native size")
    save_size: Size8 = Field(description="saved side in px; `null` keeps the generated size")
    batch_size: Count = Field(description="images per pipeline call (halves itself on CUDA out-of-memory)")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        description="`auto`: bf16/fp16 on a GPU, fp32 on the CPU"
    )
    compile: bool = Field(description="torch.compile the UNet (CUDA)")
    cpu_offload: bool = Field(description="keep models on the CPU until used (small GPUs)")
    safety_checker: bool = Field(description="run the model's safety checker (hub models only)")
    device: Device
    launcher: Launcher = Field(description="`python`, or `accelerate launch --num_processes N` for several GPUs")
    seed: ImageSeed


class _Finetune(Section):
    """What DreamBooth and Textual Inversion share (the diffusers examples' options)."""

    steps: Count = Field(description="optimizer steps")
    lr: float = Field(gt=0, description="learning rate")
    scale_lr: bool = Field(description="multiply lr by batch size x gradient accumulation x processes")
    batch_size: Count = Field(description="images per step")
    gradient_accumulation: Count = Field(description="steps accumulated per optimizer step")
    mixed_precision: Precision = Field(description="`auto` (bf16/fp16 on CUDA, none on the CPU), `no`, `fp16`, `bf16`")
    gradient_checkpointing: bool = Field(description="less GPU memory, about 20% slower")
    resolution: Size8 = Field(description="training side in px; `null` = the model's native size")
    device: Device
    launcher: Launcher
    checkpoint_every: CheckpointEvery
    seed: Seed = Field(description="seed of the instance draw, noise and timesteps")


class DreamBooth(_Finetune):
    instance_images: Count = Field(description="real images per class the model learns (the paper: about 5)")
    prompt: Template = Field(description="instance prompt with the identifier `sks`; also the generation prompt")
    class_prompt: Template = Field(description="prior-preservation prompt: what the base model draws for the class")
    prior_preservation: bool = Field(description="add the base model's own class images to the loss")
    class_images: Count = Field(description="prior images per class")
    prior_loss_weight: float = Field(ge=0, description="weight of the prior loss")
    prior_steps: Count = Field(description="DPM-Solver++ steps of the prior images")
    prior_guidance: float = Field(ge=0, description="guidance of the prior images")
    mode: Literal["full", "lora"] = Field(description="`full` (the whole UNet) or `lora` (adapters through peft)")
    lora_rank: Count = Field(description="rank of the LoRA adapters")
    lora_lr: float = Field(gt=0, description="learning rate in `lora` mode (`lr` is full mode's)")
    lora_targets: Literal["attention", "all"] = Field(
        description="UNet layers with adapters: `attention` (q, k, v, out: the diffusers example) or `all` "
        "(also projections, feed-forward, ResNet convs, time embedding)"
    )
    train_text_encoder: bool = Field(description="also fine-tune the text encoder")
    use_8bit_adam: bool = Field(description="bitsandbytes 8-bit AdamW (CUDA only)")


class TextualInversion(_Finetune):
    images: Count = Field(description="real images per class the token learns")
    num_vectors: Count = Field(description="embedding vectors behind the token `<class>`")
    init_word: Optional[str] = Field(description="the embedding starts as this word's; `null` = the class name")
    templates: Annotated[list[str], AfterValidator(_non_empty)] = Field(
        description="`object` (the diffusers example's 27 templates) or your own (`{}` = token, `{class}` = class)"
    )
    prompt: Annotated[str, AfterValidator(_template("class"))] = Field(
        description="generation prompt (`{}` = the token, `{class}` = the class name)"
    )
    init_reg: float = Field(ge=0, description="weight of an L2 pull of the token toward `init_word`")

    @model_validator(mode="after")
    def _templates(self):
        for text in self.templates:
            if text != "object":
                try:
                    _template("class")(text)
                except ValueError as e:
                    raise _fail("textual_inversion.templates", text, str(e)) from None
        return self


class Img2Img(Section):
    """SDEdit / Real Guidance (stages img2img@<name>): each image starts from a real image of d_original,
    noised to `strength` and denoised under its class prompt; the other generation settings are `generate`'s."""

    strength: Annotated[
        list[Proportion],
        AfterValidator(_non_empty),
        BeforeValidator(lambda v: [v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v),
    ] = Field(
        description="noise level: 0 keeps the real image, 1 draws anew; a list cycles through its values per image "
        "(DA-Fusion's mix); costs about strength × steps denoising steps"
    )
    per_image: Optional[Count] = Field(description="M images per real image (`null`: `per_class` in all)")
    per_class: Optional[Count] = Field(
        description="images per class in all, their parents cycled (`null`: `per_image` per real image)"
    )
    token: Optional[Literal["textual_inversion"]] = Field(
        description="`null`: the class prompts of data/prompts.json; `textual_inversion`: "
        "`textual_inversion.prompt` with each class's learned token (DA-Fusion's recipe)"
    )
    steps: Count = Field(description="denoising steps at strength 1 (strength s runs about s × steps)")
    guidance: Guidance
    seed: ImageSeed

    @model_validator(mode="after")
    def _one_count(self):
        if (self.per_image is None) == (self.per_class is None):
            raise _fail(
                "img2img.per_image",
                self.per_image,
                "set exactly one of img2img.per_image (images per real "
                "image) and img2img.per_class (images per class), the other to null",
            )
        return self


class Filter(Section):
    """The filter@<name> stages: which images of a source a filtered source keeps."""

    threshold: Proportion = Field(
        description="confidence: keep images whose own-class probability by the `reference` classifier is at least this"
    )
    drop_top: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        description="confidence: also drop this share of each class's most confident images, the too easy (ALIA)"
    )
    clip_threshold: Optional[Proportion] = Field(
        description="clip: keep images whose CLIP softmax over the class prompts gives their class at least this "
        "(`null`: 1/classes, He et al.); needs `clip.model`"
    )
    batch_size: ForwardBatch
    device: Device
