import pytest


@pytest.fixture(scope="session")
def vae_cfg():
    """A tiny Wan 2.1 VAE config with the real layout (4 stages, 8x spatial / 4x temporal, mid attention)."""
    return dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.0, 2.0, 0.5, 1.5])
