"""fastlight.diffusion.sampling: grids, CFG, Euler ODE and the few-step stochastic sampler (one head),
checked against diffusers' own FlowMatchEulerDiscreteScheduler and WanPipeline."""
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

from fastlight.diffusion.sampling import cfg_velocity, euler_sample, few_step_grid, few_step_sample, sample, shifted_grid
from fastlight.diffusion.spec import SamplerSpec
from fastlight.errors import SamplerError
from fastlight.models.denoiser import Cond
from fastlight.models.wan import WanDenoiser, tiny_wan_config

torch.set_num_threads(1)

B, C, F, H, W, L, D = 2, 4, 3, 4, 4, 3, 16


def make_denoiser() -> WanDenoiser:
    torch.manual_seed(0)
    null_text = 0.5 * torch.randn(1, L, D)  # non-zero, so cond and uncond really differ
    return WanDenoiser.from_config(null_text=null_text, **tiny_wan_config(in_channels=C, text_dim=D)).eval()


@pytest.fixture(scope="module")
def den() -> WanDenoiser:
    return make_denoiser()


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(B, C, F, H, W, generator=g)
    text = torch.randn(B, L, D, generator=g)
    image = torch.randn(B, C, 1, H, W, generator=g)
    return noise, text, image


class Counting(torch.nn.Module):
    """Wraps a denoiser and counts forwards and the batch sizes they saw."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.batches = []

    def forward(self, x_t, s, cond, skip=()):
        self.batches.append(x_t.shape[0])
        return self.inner(x_t, s, cond, skip=skip)

    def null_cond(self, cond):
        return self.inner.null_cond(cond)


def wan_pipeline(den, shift, stochastic=False) -> WanPipeline:
    """The stock pipeline; text encoder, tokenizer and VAE are not touched with
    prompt_embeds / negative_prompt_embeds / latents / output_type='latent', so they are None."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift, stochastic_sampling=stochastic)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=den.model, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_pipeline(pipe, den, noise, text, steps, guidance):
    return pipe(
        prompt_embeds=text,
        negative_prompt_embeds=den.null_cond(Cond(text)).text,
        latents=noise,
        num_inference_steps=steps,
        guidance_scale=guidance,
        output_type="latent",
    ).frames


# ---- grids ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0, 8, 0.7])
@pytest.mark.parametrize("steps", [1, 2, 4, 10, 50])
def test_shifted_grid_is_exactly_the_scheduler_sigmas(shift, steps):
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(steps)
    grid = shifted_grid(steps, shift)
    assert grid.dtype == torch.float32 and grid.shape == (steps + 1,)
    assert torch.equal(grid, sched.sigmas)
    assert grid[0] == 1.0 and grid[-1] == 0.0
    assert torch.equal(grid[:-1] * 1000, sched.timesteps)


def test_few_step_grid():
    assert few_step_grid() == [1.0, 0.75, 0.5, 0.25]
    assert few_step_grid([1000, 757, 522]) == [1.0, 0.757, 0.522]


def test_bad_input_raises_clear_errors(den, data):
    noise, text, _ = data
    cond = Cond(text)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        shifted_grid(0, 3.0)
    with pytest.raises(ValueError, match="shift must be > 0"):
        shifted_grid(4, 0.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        few_step_grid([750, 1000])
    with pytest.raises(ValueError, match="must lie in"):
        few_step_grid([1200, 500])
    with pytest.raises(ValueError, match="not be empty"):
        few_step_grid([])
    with pytest.raises(ValueError, match="strictly decreasing"):
        euler_sample(den, noise, cond, [1.0, 0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="strictly decreasing"):
        euler_sample(den, noise, cond, [0.0, 1.0])
    with pytest.raises(ValueError, match="at least 2 levels"):
        euler_sample(den, noise, cond, [1.0])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        euler_sample(den, noise, cond, [1.5, 0.0])
    with pytest.raises(ValueError, match="strictly decreasing"):
        few_step_sample(den, noise, cond, [0.5, 0.75])
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        few_step_sample(den, noise, cond, [1.0, 0.5, -0.1])
    with pytest.raises(ValueError, match="batch"):
        euler_sample(den, noise, cond.index(slice(0, 1)), shifted_grid(2, 3.0))
    with pytest.raises(ValueError, match="cond.image"):
        euler_sample(den, noise, Cond(text, image=torch.zeros(B, C, 1, H + 2, W)), shifted_grid(2, 3.0))


# ---- guidance ---------------------------------------------------------------------------------
def test_batched_cfg_equals_two_separate_forwards(den, data):
    noise, text, _ = data
    cond, s, w = Cond(text), torch.tensor([0.9, 0.3]), 4.5
    counting = Counting(den)
    with torch.no_grad():
        v = cfg_velocity(counting, noise, s, cond, w, skip=(1,))
        v_c = den(noise, s, cond, skip=(1,))
        v_u = den(noise, s, den.null_cond(cond), skip=(1,))
    assert counting.batches == [2 * B]  # one forward, cond and uncond stacked
    assert not torch.allclose(v_c, v_u, atol=1e-3)  # guidance actually does something here
    torch.testing.assert_close(v, v_u + w * (v_c - v_u), atol=1e-5, rtol=0)


def test_cfg_falls_back_to_two_forwards_when_cond_and_uncond_do_not_stack(den, data):
    class OneTokenNull(Counting):  # a null text shorter than the prompt: no batching without padding
        def null_cond(self, cond):
            return Cond(self.inner.null_text[:, :1].expand(cond.batch_size, 1, D))

    noise, text, _ = data
    cond, s = Cond(text), torch.tensor(0.6)
    counting = OneTokenNull(den)
    with torch.no_grad():
        v = cfg_velocity(counting, noise, s, cond, 3.0)
        v_c, v_u = den(noise, s, cond), den(noise, s, counting.null_cond(cond))
    assert counting.batches == [B, B]
    torch.testing.assert_close(v, v_u + 3.0 * (v_c - v_u), atol=1e-6, rtol=0)


def test_cfg_scale_one_runs_only_the_conditional_forward(den, data):
    noise, text, _ = data
    counting = Counting(den)
    with torch.no_grad():
        v = cfg_velocity(counting, noise, torch.tensor([0.5, 0.5]), Cond(text), 1.0)
        assert torch.equal(v, den(noise, torch.tensor([0.5, 0.5]), Cond(text)))
    assert counting.batches == [B]


def test_euler_with_cfg_one_is_plain_conditional_euler(den, data):
    noise, text, _ = data
    cond, grid = Cond(text), shifted_grid(3, 3.0)
    x = noise.clone()
    with torch.no_grad():
        for i in range(3):
            x = x + (grid[i + 1] - grid[i]) * den(x, grid[i].expand(B), cond)
    out = euler_sample(den, noise, cond, grid, guidance=1.0)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


# ---- equivalence with diffusers itself ----------------------------------------------------------
@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_euler_sample_equals_wan_pipeline(den, data, guidance):
    noise, text, _ = data
    steps, shift = 4, 3.0
    ref = run_pipeline(wan_pipeline(den, shift), den, noise, text, steps, guidance)
    out = euler_sample(den, noise, Cond(text), shifted_grid(steps, shift), guidance=guidance)
    assert (out - noise).abs().mean() > 0.1  # it really moved
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_few_step_sample_equals_wan_pipeline_stochastic(den, data, guidance):
    """The pipeline's scheduler.step gets no generator: its re-noising eps comes from torch's
    global RNG (randn_tensor(generator=None)); the supplied latents consume none. A CPU
    Generator seeded like torch.manual_seed produces the same stream."""
    noise, text, _ = data
    steps, shift, seed = 3, 5.0, 1234
    pipe = wan_pipeline(den, shift, stochastic=True)
    torch.manual_seed(seed)
    ref = run_pipeline(pipe, den, noise, text, steps, guidance)
    rng_after_pipeline = torch.get_rng_state()
    gen = torch.Generator().manual_seed(seed)
    out = few_step_sample(den, noise, Cond(text), shifted_grid(steps, shift), generator=gen, guidance=guidance)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # diffusers draws a (zero-weighted) eps at the last step too; so do we: the streams stay aligned
    assert torch.equal(gen.get_state(), rng_after_pipeline)
    # a different seed gives a different sample (the fresh noise matters)
    other = few_step_sample(den, noise, Cond(text), shifted_grid(steps, shift), guidance, torch.Generator().manual_seed(7))
    assert (other - out).abs().max() > 1e-3


def test_few_step_sample_equals_scheduler_on_student_timesteps(den, data):
    """[1000, 750, 500, 250] through the scheduler's own step (custom sigmas, shift 1 so they stay)."""
    noise, text, _ = data
    cond, s_list = Cond(text), few_step_grid([1000, 750, 500, 250])
    sched = FlowMatchEulerDiscreteScheduler(shift=1.0, stochastic_sampling=True)
    sched.set_timesteps(sigmas=s_list)
    assert torch.equal(sched.sigmas, torch.tensor(s_list + [0.0]))
    g_ref, x = torch.Generator().manual_seed(3), noise.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            v = den(x, (t / 1000).expand(B), cond)
            x = sched.step(v, t, x, generator=g_ref, return_dict=False)[0]
    out = few_step_sample(den, noise, cond, s_list, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def test_per_sample_generators_make_samples_batch_invariant(den, data):
    """A list of B generators draws sample b's re-noising from generator b, as diffusers' randn_tensor does
    (the scheduler's own step with the same list), so a sample is the same in a batch of B as alone."""
    noise, text, _ = data
    cond, s_list = Cond(text), few_step_grid([1000, 750, 500, 250])

    def gens():
        return [torch.Generator().manual_seed(100 + b) for b in range(B)]

    sched = FlowMatchEulerDiscreteScheduler(shift=1.0, stochastic_sampling=True)
    sched.set_timesteps(sigmas=s_list)
    g_ref, x = gens(), noise.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(den(x, (t / 1000).expand(B), cond), t, x, generator=g_ref, return_dict=False)[0]
    batched = few_step_sample(den, noise, cond, s_list, guidance=2.0, generator=gens())
    torch.testing.assert_close(few_step_sample(den, noise, cond, s_list, generator=gens()), x, atol=1e-6, rtol=0)
    for b, g in enumerate(gens()):
        alone = few_step_sample(den, noise[b:b + 1], Cond(text[b:b + 1]), s_list, guidance=2.0, generator=[g])
        torch.testing.assert_close(alone, batched[b:b + 1], atol=1e-5, rtol=0)
    with pytest.raises(SamplerError, match=r"1 generator\(s\) for a batch of 2"):
        few_step_sample(den, noise, cond, s_list, generator=gens()[:1])


def test_one_step_returns_x0_hat_of_pure_noise(den, data):
    noise, text, _ = data
    cond = Cond(text)
    with torch.no_grad():
        x0_hat = noise - 1.0 * den(noise, torch.ones(B), cond)
    out = few_step_sample(den, noise, cond, [1.0], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0_hat, atol=1e-6, rtol=0)
    # one Euler step from s = 1 to 0 lands on the same point
    torch.testing.assert_close(euler_sample(den, noise, cond, shifted_grid(1, 3.0)), x0_hat, atol=1e-6, rtol=0)


# ---- TI2V, dtypes, autograd -------------------------------------------------------------------
def test_ti2v_first_frame_stays_the_image(den, data):
    noise, text, image = data
    cond = Cond(text, image=image)
    out_ode = euler_sample(den, noise, cond, shifted_grid(3, 3.0), guidance=3.0)
    out_few = few_step_sample(den, noise, cond, few_step_grid(), guidance=3.0, generator=torch.Generator().manual_seed(0))
    for out in (out_ode, out_few):
        assert torch.equal(out[:, :, :1], image)
        assert (out[:, :, 1:] - noise[:, :, 1:]).abs().mean() > 0.1


def test_outputs_are_ordinary_tensors_in_the_noise_dtype(den, data):
    noise, text, _ = data
    out = euler_sample(den, noise, Cond(text), shifted_grid(1, 3.0), progress=True)
    assert out.dtype == noise.dtype and not out.is_inference()
    out = few_step_sample(den, noise, Cond(text), [1.0, 0.5], progress=True)
    assert out.dtype == noise.dtype and not out.is_inference()
    (out * torch.ones_like(out, requires_grad=True)).sum().backward()  # usable as a training input


# ---- one head: sample(spec), guidance and skip applied alike ------------------------------------
def test_sample_runs_the_sampler_its_spec_names(den, data):
    noise, text, image = data
    cond = Cond(text, image=image)
    euler = SamplerSpec.euler(3, guidance=2.5, shift=5.0)
    torch.testing.assert_close(sample(den, noise, cond, euler),
                               euler_sample(den, noise, cond, shifted_grid(3, 5.0), guidance=2.5), atol=0, rtol=0)
    few = SamplerSpec.few_step((1000, 600, 300), guidance=2.0)
    out = sample(den, noise, cond, few, generator=torch.Generator().manual_seed(4))
    ref = few_step_sample(den, noise, cond, [1.0, 0.6, 0.3], guidance=2.0, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


@pytest.mark.parametrize("spec", [SamplerSpec.euler(2, guidance=3.0), SamplerSpec.few_step((1000, 500), guidance=3.0),
                                  SamplerSpec.euler(2, guidance=1.0), SamplerSpec.few_step((1000, 500), guidance=1.0)])
def test_both_samplers_apply_guidance_and_skip_the_same_way(den, data, spec):
    """Every step is one forward (cond + uncond stacked when guided) with the skip set passed through."""
    noise, text, _ = data

    class SkipSeen(Counting):
        def forward(self, x_t, s, cond, skip=()):
            self.skips = getattr(self, "skips", []) + [tuple(skip)]
            return super().forward(x_t, s, cond, skip=skip)

    counting = SkipSeen(den)
    out = sample(counting, noise, Cond(text), spec, generator=torch.Generator().manual_seed(0), skip={1})
    per_forward = 2 * B if spec.guidance != 1 else B
    assert counting.batches == [per_forward] * spec.num_steps and counting.skips == [(1,)] * spec.num_steps
    assert sum(counting.batches) // B == spec.nfe
    full = sample(den, noise, Cond(text), spec, generator=torch.Generator().manual_seed(0))
    assert (out - full).abs().max() > 1e-4  # the skipped block mattered
