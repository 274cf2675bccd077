"""The built-in base model (`base.model: builtin:tiny`): a tiny Stable-Diffusion-architecture
text-to-image model that draws digits, made here and pretrained on a CPU in minutes.

- `render`: the training corpus, printed digits rendered with the font inside Pillow;
- `tokenizer`: a CLIP BPE vocabulary written from scratch (no download);
- `model`: the UNet, VAE and CLIP text encoder, saved as a regular StableDiffusionPipeline folder;
- `pretrain`: their training.
The rest of the project (generation, DreamBooth, Textual Inversion) treats it like any SD checkpoint.
"""
