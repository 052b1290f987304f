"""The diffusion reference: MONAI's 3D latent diffusion model of the brain LDM tutorial, random weights.

Configuration of Project-MONAI/tutorials ``generation/3d_ldm/3d_ldm_tutorial.ipynb`` (Pinaya et al.
2022, "Brain imaging generation with latent diffusion models"), with the networks and schedulers
of the installed ``monai`` (``monai.networks.nets``, ``monai.networks.schedulers``,
``monai.inferers``):

- ``AutoencoderKL(spatial_dims=3, in_channels=1, out_channels=1, channels=(32, 64, 64),
  latent_channels=3, num_res_blocks=1, norm_num_groups=16, attention_levels=(False, False, True))``
  (two downsamplings: a 128^3 volume has a 3 x 32^3 latent);
- ``DiffusionModelUNet(spatial_dims=3, in_channels=3, out_channels=3, num_res_blocks=1,
  channels=(32, 64, 64), attention_levels=(False, True, True), num_head_channels=(0, 64, 64))``;
- ``DDPMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015,
  beta_end=0.0195)``, and a DDIM scheduler of the same schedule for 50-step sampling.

The tutorial's model makes one single-channel volume per sample; gliomagen makes four modalities
and a mask in one pass. Timing: 50-step DDIM sampling of one volume through
``LatentDiffusionInferer.sample`` (latent denoising and decoding) is timed as a whole; 1000-step
DDPM sampling is *extrapolated*: a few denoising steps are timed and multiplied out, plus one timed
decode.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from monai.inferers import LatentDiffusionInferer
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from gliomagen.bench.timing import count_flops, sync

LATENT_DOWNSAMPLING = 4  # two downsamplings in the autoencoder


def build_ldm(device: torch.device) -> tuple[Any, Any]:
    """``(autoencoder, unet)`` of the tutorial's configuration, random weights, eval mode."""
    autoencoder = AutoencoderKL(
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        channels=(32, 64, 64),
        latent_channels=3,
        num_res_blocks=1,
        norm_num_groups=16,
        attention_levels=(False, False, True),
    )
    unet = DiffusionModelUNet(
        spatial_dims=3,
        in_channels=3,
        out_channels=3,
        num_res_blocks=1,
        channels=(32, 64, 64),
        attention_levels=(False, True, True),
        num_head_channels=(0, 64, 64),
    )
    return autoencoder.to(device).eval(), unet.to(device).eval()


def schedulers() -> tuple[Any, Any]:
    """``(ddpm, ddim)`` schedulers of the tutorial's noise schedule."""
    kw: dict[str, Any] = {"num_train_timesteps": 1000, "schedule": "scaled_linear_beta",
                          "beta_start": 0.0015, "beta_end": 0.0195}  # fmt: skip
    return DDPMScheduler(**kw), DDIMScheduler(**kw)


def time_ldm(
    size: int, device: torch.device, ddim_steps: int = 50, ddpm_timed_steps: int = 3
) -> dict[str, Any]:
    """Seconds to sample one ``size^3`` volume: DDIM (timed) and DDPM 1000 steps (extrapolated).

    Returns:
        ``ddim_s`` (timed, ``ddim_steps`` steps and the decode), ``ddpm_1000_s`` (extrapolated),
        ``unet_step_s``, ``decode_s``, ``unet_step_flops``, ``decode_flops``, parameter counts.
    """
    autoencoder, unet = build_ldm(device)
    ddpm, ddim = schedulers()
    side = size // LATENT_DOWNSAMPLING
    noise = torch.randn(1, 3, side, side, side, device=device)
    t = torch.full((1,), 500, device=device, dtype=torch.long)
    with torch.no_grad():
        step_flops = count_flops(lambda: unet(noise, timesteps=t))
        decode_flops = count_flops(lambda: autoencoder.decode_stage_2_outputs(noise))
        sync(device)  # (the counted calls were the warm-up)
        t0 = time.perf_counter()
        for i in range(ddpm_timed_steps):
            out = unet(noise, timesteps=t)
            noise_next, _ = ddpm.step(out, 999 - i, noise)
        sync(device)
        step_s = (time.perf_counter() - t0) / ddpm_timed_steps
        t0 = time.perf_counter()
        autoencoder.decode_stage_2_outputs(noise)
        sync(device)
        decode_s = time.perf_counter() - t0
        ddim.set_timesteps(num_inference_steps=ddim_steps)
        inferer = LatentDiffusionInferer(ddim, scale_factor=1.0)
        t0 = time.perf_counter()
        image = inferer.sample(
            input_noise=noise, autoencoder_model=autoencoder, diffusion_model=unet,
            scheduler=ddim, verbose=False,
        )  # fmt: skip
        sync(device)
        ddim_s = time.perf_counter() - t0
    assert isinstance(image, torch.Tensor) and tuple(image.shape[2:]) == (size,) * 3
    del noise_next
    return {
        "size": size,
        "latent": [3, side, side, side],
        "ddim_steps": ddim_steps,
        "ddim_s": ddim_s,
        "ddpm_steps": 1000,
        "ddpm_1000_s": 1000 * step_s + decode_s,
        "ddpm_extrapolated_from_steps": ddpm_timed_steps,
        "unet_step_s": step_s,
        "decode_s": decode_s,
        "unet_step_flops": step_flops,
        "decode_flops": decode_flops,
        "ddim_flops": ddim_steps * step_flops + decode_flops,
        "ddpm_1000_flops": 1000 * step_flops + decode_flops,
        "autoencoder_params": sum(p.numel() for p in autoencoder.parameters()),
        "unet_params": sum(p.numel() for p in unet.parameters()),
    }
