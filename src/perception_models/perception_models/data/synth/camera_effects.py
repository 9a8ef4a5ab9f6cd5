"""Domain randomization of the camera: exposure, gamma, white balance, colour shifts, vignetting,
blur and sensor noise, drawn per sequence (with small per-frame jitter) from a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class CameraEffects:
    exposure: float  # gain on radiance
    gamma: float  # tone curve exponent around 1 (the renderer outputs display values)
    white_balance: np.ndarray  # per-channel gains (RGB)
    saturation: float
    vignetting: float  # darkening at the corners, 0..1
    blur_sigma: float  # pixels (defocus); 0 = sharp
    motion_blur: int  # horizontal kernel length in pixels; 0/1 = none
    noise_sigma: float  # Gaussian read noise on [0, 255] values
    shot_noise: float  # signal-dependent noise factor
    exposure_jitter: float  # per-frame relative exposure jitter

    @staticmethod
    def sample(rng: np.random.Generator, strength: float = 1.0) -> "CameraEffects":
        """``strength`` 0 gives a clean camera, 1 the default randomization."""
        s = float(np.clip(strength, 0.0, 2.0))
        return CameraEffects(
            exposure=float(np.exp(rng.normal(0.1, 0.25 * s))),
            gamma=float(np.exp(rng.normal(0.0, 0.12 * s))),
            white_balance=np.exp(rng.normal(0, 0.06 * s, 3)).astype(np.float32),
            saturation=float(np.clip(rng.normal(1.0, 0.15 * s), 0.5, 1.5)),
            vignetting=float(rng.uniform(0.0, 0.35 * s)),
            blur_sigma=float(rng.choice([0.0, rng.uniform(0.3, 1.2 * s)], p=[0.6, 0.4])) if s > 0 else 0.0,
            motion_blur=int(rng.choice([0, 0, 3, 5])) if s > 0 else 0,
            noise_sigma=float(rng.uniform(0.5, 3.0 * s)) if s > 0 else 0.0,
            shot_noise=float(rng.uniform(0.0, 0.6 * s)),
            exposure_jitter=0.03 * s,
        )

    def apply(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Linear radiance (H, W, 3) float -> uint8 RGB as the camera would deliver it."""
        h, w = rgb.shape[:2]
        gain = self.exposure * (1.0 + rng.normal(0, self.exposure_jitter))
        scale = (gain * self.white_balance).astype(np.float32)[None, None, :]
        if self.vignetting > 0:
            scale = scale * self._vignette(h, w)[..., None]
        x = np.asarray(rgb, np.float32) * scale
        if self.blur_sigma > 0:
            x = cv2.GaussianBlur(x, (0, 0), self.blur_sigma)
        if self.motion_blur > 1:
            k = np.full((1, self.motion_blur), 1.0 / self.motion_blur, np.float32)
            x = cv2.filter2D(x, -1, k)
        if self.saturation != 1.0:
            grey = x.mean(axis=2, keepdims=True)
            x = grey + (x - grey) * np.float32(self.saturation)
        np.clip(x, 0.0, 1.0, out=x)
        if abs(self.gamma - 1.0) > 1e-3:
            cv2.pow(x, 1.0 / self.gamma, dst=x)
        x *= 255.0
        if self.noise_sigma > 0 or self.shot_noise > 0:
            sigma = np.sqrt(np.float32(self.noise_sigma**2) + np.float32(self.shot_noise) * x)
            x += rng.standard_normal(x.shape, dtype=np.float32) * sigma
        x += 0.5
        np.clip(x, 0, 255, out=x)
        return x.astype(np.uint8)

    def _vignette(self, h: int, w: int) -> np.ndarray:
        cache = getattr(self, "_vig", None)
        if cache is None or cache.shape != (h, w):
            yy, xx = np.ogrid[0:h, 0:w]
            r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
            cache = (1.0 - self.vignetting * 0.5 * r2).astype(np.float32)
            self._vig = cache
        return cache
