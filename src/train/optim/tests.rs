//! The fused CPU kernels against the candle-op path they replace (which `tests/optim.rs` checks
//! against the original implementations, on f64 parameters).

use candle_core::{Device, Tensor, Var};

use super::*;
use crate::Rng;

/// One parameter over two chunks with a ragged tail, one shorter than a vector (tail only), a head
/// with its own learning-rate factor, and one that never gets a gradient.
const SHAPES: [(&str, &[usize]); 4] = [("enc.w", &[67, 301]), ("enc.b", &[5]), ("head.w", &[6, 8]), ("frozen", &[4])];

fn params(shapes: &[(&str, &[usize])], seed: u64) -> Vec<Param> {
    let mut rng = Rng::new(seed);
    shapes
        .iter()
        .map(|&(name, dims)| {
            let n = dims.iter().product();
            let values = Tensor::from_vec(rng.normal_vec(n, 0.0, 0.5), dims, &Device::Cpu).unwrap();
            (name.to_string(), Var::from_tensor(&values).unwrap())
        })
        .collect()
}

/// Random gradients for every parameter but `frozen` (backprop of Σ w ⊙ g gives exactly g), at
/// a scale that makes apex LAMB clip (1) or not (1e-3).
fn grads(params: &[Param], step: u64, scale: f32) -> GradStore {
    let mut rng = Rng::new(1000 + step);
    let mut total = Tensor::new(0f32, &Device::Cpu).unwrap();
    for (_, var) in params.iter().filter(|(name, _)| name != "frozen") {
        let g = rng.normal_vec(var.elem_count(), 0.0, scale);
        let g = Tensor::from_vec(g, var.shape(), &Device::Cpu).unwrap();
        total = (total + var.as_tensor().mul(&g).unwrap().sum_all().unwrap()).unwrap();
    }
    total.backward().unwrap()
}

type Make = fn() -> Box<dyn Optimizer>;

fn optimisers() -> Vec<(&'static str, Make)> {
    vec![
        ("apex LAMB", || Box::new(Lamb::apex_proberta())),
        ("tfa LAMB", || Box::new(Lamb::tfa_proteinbert())),
        ("Keras Adam", || Box::new(Adam::keras())),
        ("AdamW", || Box::new(Adam::adamw(0.01))),
    ]
}

fn make(make: Make, candle_ops: bool) -> Box<dyn Optimizer> {
    let mut opt = make();
    opt.set_lr_scales(vec![("head.".into(), 3.0)]);
    opt.moments_mut().candle_ops_only = candle_ops;
    opt
}

/// Steps `steps` (numbers, which pick the gradients) on `params`; gradients alternate between
/// clipped and unclipped sizes.
fn run(opt: &mut dyn Optimizer, params: &[Param], steps: std::ops::Range<u64>) {
    for step in steps {
        let scale = if step % 2 == 0 { 1.0 } else { 1e-3 };
        let stats = opt.step(params, &grads(params, step, scale), 0.01).unwrap();
        assert_eq!(stats.updated, 3);
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The largest `|a − b| / (|b| + 1e-3)` between two sets of parameters.
fn worst_params(a: &[Param], b: &[Param]) -> f64 {
    a.iter().zip(b).map(|(x, y)| worst(&values(x.1.as_tensor()), &values(y.1.as_tensor()))).fold(0.0, f64::max)
}

fn worst(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs() / (y.abs() as f64 + 1e-3)).fold(0.0, f64::max)
}

fn worst_state(a: &dyn Optimizer, b: &dyn Optimizer) -> f64 {
    let ((sa, a), (sb, b)) = (a.state(), b.state());
    assert_eq!(sa, sb);
    let mut keys: Vec<_> = a.keys().collect();
    keys.sort();
    let mut other: Vec<_> = b.keys().collect();
    other.sort();
    assert_eq!(keys, other);
    assert!(!a.contains_key("m.frozen") && a.contains_key("v.enc.w"), "{keys:?}");
    keys.iter().map(|k| worst(&values(&a[*k]), &values(&b[*k]))).fold(0.0, f64::max)
}

#[test]
fn fused_steps_equal_the_candle_ops() {
    for (name, new) in optimisers() {
        let (fused, reference) = (params(&SHAPES, 1), params(&SHAPES, 1));
        let (mut a, mut b) = (make(new, false), make(new, true));
        run(a.as_mut(), &fused, 0..4);
        run(b.as_mut(), &reference, 0..4);
        let on_path = |opt: &dyn Optimizer| matches!(opt.moments().m["enc.w"], Moment::Host(..));
        assert!(on_path(a.as_ref()) && !on_path(b.as_ref()), "{name}: each took its path");
        let (dp, ds) = (worst_params(&fused, &reference), worst_state(a.as_ref(), b.as_ref()));
        eprintln!("{name}: fused vs candle ops after 4 steps: params {dp:.1e}, moments {ds:.1e} (relative)");
        assert!(dp <= 1e-6 && ds <= 1e-6, "{name}: params {dp}, moments {ds}");
        assert!(worst_params(&fused, &params(&SHAPES, 1)) > 1e-3, "{name}: the parameters moved");
        assert_eq!(values(fused[3].1.as_tensor()), values(params(&SHAPES, 1)[3].1.as_tensor()), "{name}: frozen");

        // The same bits on a second run, whatever the threads did.
        let again = params(&SHAPES, 1);
        run(make(new, false).as_mut(), &again, 0..4);
        for (x, y) in fused.iter().zip(&again) {
            assert_eq!(values(x.1.as_tensor()), values(y.1.as_tensor()), "{name}: deterministic");
        }
    }
}

/// A state saved on either path continues on the fused one: bit for bit after a fused save, and
/// within rounding after a candle-op save (the moments move from tensors into buffers).
#[test]
fn fused_state_restores_from_either_path() {
    for (name, new) in optimisers() {
        let straight = params(&SHAPES, 2);
        let mut a = make(new, false);
        run(a.as_mut(), &straight, 0..4);
        for candle_ops in [false, true] {
            let resumed = params(&SHAPES, 2);
            let mut first = make(new, candle_ops);
            run(first.as_mut(), &resumed, 0..2);
            let (steps, state) = first.state();
            let mut second = make(new, false);
            second.load_state(steps, state).unwrap();
            run(second.as_mut(), &resumed, 2..4);
            let d = worst_params(&straight, &resumed);
            if candle_ops {
                assert!(d <= 1e-6, "{name}: {d}");
            } else {
                assert_eq!(d, 0.0, "{name}: a fused resume is bitwise");
                assert_eq!(worst_state(a.as_ref(), second.as_ref()), 0.0, "{name}");
            }
        }
        // The state handed out is a copy: stepping on does not change it.
        let (_, before) = a.state();
        let kept = values(&before["m.enc.w"]);
        run(a.as_mut(), &straight, 4..5);
        assert_eq!(values(&before["m.enc.w"]), kept, "{name}");
    }
    // A restored moment of another shape is an error naming it.
    let p = params(&SHAPES, 3);
    let mut opt = Lamb::apex_proberta();
    let bad = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    opt.load_state(1, [("m.enc.b".to_string(), bad)].into()).unwrap();
    let err = opt.step(&p, &grads(&p, 0, 1.0), 0.01).unwrap_err().to_string();
    assert!(err.contains("m.enc.b"), "{err}");
}

#[test]
fn fused_grad_norm_equals_the_f64_sum() {
    let p = params(&SHAPES, 4);
    let g = grads(&p, 0, 1.0);
    let mut want = 0f64;
    for (_, var) in &p {
        if let Some(g) = g.get(var) {
            want += values(g).iter().map(|&x| x as f64 * x as f64).sum::<f64>();
        }
    }
    let got = global_grad_norm(&p, &g).unwrap();
    assert!((got - want.sqrt()).abs() <= 1e-12 * want.sqrt(), "{got} vs {}", want.sqrt());
}

/// The optimiser step alone on PRoBERTa's parameter shapes (44 M), fused and with candle ops:
/// `cargo test --release --lib optim::tests::time_ -- --ignored --nocapture`.
#[test]
#[ignore = "a timing, not a test"]
fn time_lamb_step_on_proberta_shapes() {
    let (h, f, vocab) = (768, 3072, 10_009);
    let mut shapes: Vec<(String, Vec<usize>)> =
        vec![("emb.tok".into(), vec![vocab, h]), ("emb.pos".into(), vec![514, h])];
    for l in 0..5 {
        for (part, dims) in [
            ("q.w", vec![h, h]),
            ("k.w", vec![h, h]),
            ("v.w", vec![h, h]),
            ("o.w", vec![h, h]),
            ("fc1.w", vec![f, h]),
            ("fc2.w", vec![h, f]),
            ("fc1.b", vec![f]),
        ] {
            shapes.push((format!("layer{l}.{part}"), dims));
        }
        for part in ["q.b", "k.b", "v.b", "o.b", "fc2.b", "ln1.w", "ln1.b", "ln2.w", "ln2.b"] {
            shapes.push((format!("layer{l}.{part}"), vec![h]));
        }
    }
    shapes.extend([("lm.dense".into(), vec![h, h]), ("lm.bias".into(), vec![vocab])]);
    let shapes: Vec<(&str, &[usize])> = shapes.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let p = params(&shapes, 5);
    let n: usize = p.iter().map(|(_, v)| v.elem_count()).sum();
    let g = grads(&p, 0, 1.0);
    for candle_ops in [true, false] {
        let mut opt = Lamb::apex_proberta();
        opt.moments.candle_ops_only = candle_ops;
        let mut seconds = Vec::new();
        for _ in 0..4 {
            let start = std::time::Instant::now();
            opt.step(&p, &g, 2.5e-3).unwrap();
            seconds.push(start.elapsed().as_secs_f64());
        }
        let start = std::time::Instant::now();
        grad_norm(&p, &g, candle_ops).unwrap();
        let norm = start.elapsed().as_secs_f64();
        let path = if candle_ops { "candle ops" } else { "fused" };
        eprintln!(
            "apex LAMB step on {n} parameters, {path}: {:?} s (first step allocates the moments); \
             the global grad norm alone {norm:.3} s",
            seconds.iter().map(|s| (s * 1000.0).round() / 1000.0).collect::<Vec<_>>()
        );
    }
}
