//! The optimisers: properties here; equality with the original implementations in
//! `optimizers_equal_their_references` once the fixtures exist (`tests/fixtures/optim/`).

use candle_core::{DType, Device, Tensor, Var};
use protein_lm::train::optim::{Adam, Lamb, Optimizer, Param};

fn params() -> Vec<Param> {
    let a = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0, 3.0], &Device::Cpu).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::new(&[[0.5f64, 0.5], [-1.0, 2.0]], &Device::Cpu).unwrap()).unwrap();
    let frozen = Var::from_tensor(&Tensor::new(&[7.0f64], &Device::Cpu).unwrap()).unwrap();
    vec![("a".into(), a), ("b".into(), b), ("frozen".into(), frozen)]
}

/// Σ (w − 1)² over the trainable parameters: every optimiser must drive it down, and a parameter
/// outside the loss (no gradient, as when frozen) must not move.
fn loss(p: &[Param]) -> Tensor {
    let a = (p[0].1.as_tensor() - 1.0).unwrap().sqr().unwrap().sum_all().unwrap();
    let b = (p[1].1.as_tensor() - 1.0).unwrap().sqr().unwrap().sum_all().unwrap();
    (a + b).unwrap()
}

fn run(opt: &mut dyn Optimizer, lr: f64, steps: usize) -> (f64, f64, Vec<Param>) {
    let p = params();
    let start = loss(&p).to_scalar::<f64>().unwrap();
    for _ in 0..steps {
        let grads = loss(&p).backward().unwrap();
        let stats = opt.step(&p, &grads, lr).unwrap();
        assert_eq!(stats.updated, 2);
    }
    let end = loss(&p).to_scalar::<f64>().unwrap();
    (start, end, p)
}

#[test]
fn every_optimiser_descends_and_leaves_parameters_without_gradient_alone() {
    let optimisers: Vec<(&str, Box<dyn Optimizer>, f64)> = vec![
        ("apex LAMB", Box::new(Lamb::apex_proberta()), 0.05),
        ("tfa LAMB", Box::new(Lamb::tfa_proteinbert()), 0.05),
        ("Keras Adam", Box::new(Adam::keras()), 0.05),
        ("AdamW", Box::new(Adam::adamw(0.01)), 0.05),
    ];
    for (name, mut opt, lr) in optimisers {
        let (start, end, p) = run(opt.as_mut(), lr, 50);
        assert!(end < 0.2 * start, "{name}: loss {start} → {end}");
        assert_eq!(p[2].1.as_tensor().to_vec1::<f64>().unwrap(), vec![7.0], "{name} moved a frozen parameter");
        assert_eq!(opt.steps(), 50);
        let (_, state) = opt.state();
        assert!(state.contains_key("m.a") && state.contains_key("v.b") && !state.contains_key("m.frozen"));
    }
}

/// A learning-rate factor by name prefix scales that parameter's step (0 holds it, 1 is the plain
/// step bit for bit), for every optimiser, and survives a state restore.
#[test]
fn learning_rate_factors_scale_each_group_and_survive_a_restore() {
    type Make = fn() -> Box<dyn Optimizer>;
    let optimisers: Vec<(&str, Make)> = vec![
        ("apex LAMB", || Box::new(Lamb::apex_proberta())),
        ("tfa LAMB", || Box::new(Lamb::tfa_proteinbert())),
        ("Keras Adam", || Box::new(Adam::keras())),
        ("AdamW", || Box::new(Adam::adamw(0.0))),
    ];
    for (name, make) in optimisers {
        // Factor 1 is the plain step, bit for bit; factor 0 holds, also after a state restore.
        let (plain, scaled, held) = (params(), params(), params());
        let (mut a, mut b, mut c) = (make(), make(), make());
        b.set_lr_scales(vec![("b".into(), 1.0)]);
        c.set_lr_scales(vec![("a".into(), 0.0)]);
        c.step(&held, &loss(&held).backward().unwrap(), 0.01).unwrap();
        let (state_steps, state) = c.state();
        c.load_state(state_steps, state).unwrap();
        for _ in 0..3 {
            a.step(&plain, &loss(&plain).backward().unwrap(), 0.01).unwrap();
            b.step(&scaled, &loss(&scaled).backward().unwrap(), 0.01).unwrap();
            c.step(&held, &loss(&held).backward().unwrap(), 0.01).unwrap();
        }
        for (x, y) in plain.iter().zip(&scaled) {
            let diff = (x.1.as_tensor() - y.1.as_tensor()).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f64>().unwrap(), 0.0, "{name}: factor 1 is the plain step");
        }
        // Factor 0 held its parameters through the restore (the others moved).
        assert_eq!(held[0].1.as_tensor().to_vec1::<f64>().unwrap(), vec![1.0, -2.0, 3.0], "{name}: factor 0 holds");
        assert_ne!(
            held[1].1.as_tensor().to_vec2::<f64>().unwrap(),
            params()[1].1.as_tensor().to_vec2::<f64>().unwrap()
        );
        // Factor 2 on one Adam-family step: twice the displacement (the moments do not see it).
        let (one, two) = (params(), params());
        let (mut c, mut d) = (make(), make());
        d.set_lr_scales(vec![("a".into(), 2.0)]);
        c.step(&one, &loss(&one).backward().unwrap(), 0.01).unwrap();
        d.step(&two, &loss(&two).backward().unwrap(), 0.01).unwrap();
        let moved =
            |p: &[Param]| (p[0].1.as_tensor() - &params()[0].1.as_tensor().clone()).unwrap().to_vec1::<f64>().unwrap();
        for (x, y) in moved(&one).iter().zip(moved(&two)) {
            assert!((2.0 * x - y).abs() < 1e-12, "{name}: {x} vs {y}");
        }
    }
}

/// Saving the state and restoring it into a fresh optimiser continues bit for bit.
#[test]
fn state_round_trip_continues_identically() {
    let p1 = params();
    let p2 = params();
    let mut a = Lamb::apex_proberta();
    let mut b = Lamb::apex_proberta();
    for _ in 0..3 {
        let g = loss(&p1).backward().unwrap();
        a.step(&p1, &g, 0.01).unwrap();
        let g = loss(&p2).backward().unwrap();
        b.step(&p2, &g, 0.01).unwrap();
    }
    let (steps, state) = b.state();
    let mut c = Lamb::apex_proberta();
    c.load_state(steps, state).unwrap();
    for _ in 0..3 {
        let g = loss(&p1).backward().unwrap();
        a.step(&p1, &g, 0.01).unwrap();
        let g = loss(&p2).backward().unwrap();
        c.step(&p2, &g, 0.01).unwrap();
    }
    for (x, y) in p1.iter().zip(&p2) {
        let d = (x.1.as_tensor() - y.1.as_tensor()).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(d.to_scalar::<f64>().unwrap(), 0.0);
    }
    assert!(c
        .load_state(1, [("x.a".to_string(), Tensor::zeros(1, DType::F64, &Device::Cpu).unwrap())].into())
        .is_err());
}

mod references {
    use super::*;
    use serde_json::Value;

    fn load(file: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/optim").join(file);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn floats(v: &Value) -> Vec<f64> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    }

    /// Runs `opt` over the fixture's 5 steps of gradients for `run` ("const" or "sched" learning
    /// rates) and returns the largest difference from the reference parameters after any step.
    fn replay(d: &Value, case: &str, run: &str, opt: &mut dyn Optimizer) -> f64 {
        let names: Vec<String> =
            d["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
        let shapes: Vec<Vec<usize>> = d["shapes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect())
            .collect();
        let tensor = |v: &Value, i: usize| Tensor::from_vec(floats(v), shapes[i].as_slice(), &Device::Cpu).unwrap();
        let params: Vec<Param> = (0..names.len())
            .map(|i| (names[i].clone(), Var::from_tensor(&tensor(&d["initial_params"][i], i)).unwrap()))
            .collect();
        let lrs = floats(&d["lr"][run]);
        let expected = &d["cases"][case]["runs"][run]["params"];
        let mut worst = 0f64;
        for (step, lr) in lrs.iter().enumerate() {
            // The gradients as a GradStore: backprop of Σ w ⊙ g gives exactly g.
            let mut total = Tensor::new(0f64, &Device::Cpu).unwrap();
            for (i, (_, var)) in params.iter().enumerate() {
                let g = tensor(&d["grads"][step][i], i);
                total = (total + var.as_tensor().mul(&g).unwrap().sum_all().unwrap()).unwrap();
            }
            let grads = total.backward().unwrap();
            opt.step(&params, &grads, *lr).unwrap();
            for (i, (_, var)) in params.iter().enumerate() {
                let want = floats(&expected[step][i]);
                let got = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
                for (a, b) in got.iter().zip(&want) {
                    worst = worst.max((a - b).abs());
                }
            }
        }
        worst
    }

    #[test]
    fn optimizers_equal_their_references() {
        let d = load("optim.json");
        let t = load("optim_adamw.json");
        for run in ["const", "sched"] {
            let cases: Vec<(&str, &Value, Box<dyn Optimizer>)> = vec![
                ("apex_lamb", &d, Box::new(Lamb::apex_proberta())),
                ("tfa_lamb", &d, Box::new(Lamb::tfa_proteinbert())),
                ("keras_adam", &d, Box::new(Adam::keras())),
                ("torch_adamw", &t, Box::new(Adam::adamw(0.01))),
            ];
            for (case, data, mut opt) in cases {
                let worst = replay(data, case, run, opt.as_mut());
                println!("{case} ({run} learning rate), 5 steps: max |Δparam| = {worst:.2e}");
                assert!(worst <= 1e-6, "{case} {run}: {worst}");
            }
        }
    }
}
