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
