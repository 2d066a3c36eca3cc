//! The paper's baseline networks (`models::baselines`): shapes, parameter counts, learning on
//! synthetic tasks with a known answer, determinism, early stopping, bad input.

use candle_core::{DType, Device};
use ndarray::Array2;
use protein_lm::models::baselines::fit::{accuracy, fit, predict_proba, FitOptions, Inputs};
use protein_lm::models::baselines::mlp::{pair_features, Mlp, MlpConfig};
use protein_lm::models::baselines::Classifier;
use protein_lm::models::init::SeededVarMap;
use protein_lm::{Result, Rng};

/// Pairs of proteins drawn from 4 Gaussian clusters in 6 dimensions, labelled 1 when the two
/// clusters have the same parity: an XOR of cluster features, which no linear model separates.
fn cluster_pairs(seed: u64, n_pairs: usize) -> (Inputs, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let (k, dim, n_proteins) = (4, 6, 200);
    let mut centres = Rng::new(99);
    let centres: Vec<Vec<f64>> = (0..k).map(|_| (0..dim).map(|_| 2.0 * centres.normal()).collect()).collect();
    let cluster: Vec<usize> = (0..n_proteins).map(|i| i % k).collect();
    let features = Array2::from_shape_fn((n_proteins, dim), |(i, j)| centres[cluster[i]][j] + 0.3 * rng.normal());
    let pairs: Vec<(usize, usize)> = (0..n_pairs).map(|_| (rng.index(n_proteins), rng.index(n_proteins))).collect();
    let labels = pairs.iter().map(|&(a, b)| usize::from((cluster[a] + cluster[b]) % 2 == 0)).collect();
    (Inputs::Dense(pair_features(&features, &pairs).unwrap()), labels)
}

fn small_mlp(seed: u64) -> Result<(Mlp, SeededVarMap)> {
    let vars = SeededVarMap::new(seed);
    let config = MlpConfig { input_width: 12, hidden: vec![32, 16], dropout: 0.1, n_classes: 2 };
    Ok((Mlp::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?, vars))
}

fn mlp_options(seed: u64) -> FitOptions {
    FitOptions { epochs: 25, batch_size: 32, lr: 1e-2, seed, ..FitOptions::default() }
}

#[test]
fn mlp_learns_a_pair_rule_on_gaussian_clusters() -> Result<()> {
    let (train_x, train_y) = cluster_pairs(1, 600);
    let (test_x, test_y) = cluster_pairs(2, 300);
    let (mlp, vars) = small_mlp(3)?;
    let before = accuracy(&mlp, &test_x, &test_y, 64, &Device::Cpu)?;
    let report = fit(&mlp, &vars, (&train_x, &train_y), None, &mlp_options(4))?;
    let after = accuracy(&mlp, &test_x, &test_y, 64, &Device::Cpu)?;
    let losses: Vec<f64> = report.epochs.iter().map(|e| e.train_loss).collect();
    eprintln!("MLP on the cluster-parity pairs: held-out accuracy {before:.3} -> {after:.3}, losses {losses:.3?}");
    assert!(after >= 0.9, "held-out accuracy {after}");
    assert!(losses.last().unwrap() < &(0.5 * losses[0]), "{losses:?}");
    assert_eq!(report.best_epoch, 25);
    Ok(())
}

#[test]
fn predict_proba_rows_are_distributions_in_input_order() -> Result<()> {
    let (x, _) = cluster_pairs(5, 40);
    let (mlp, _) = small_mlp(6)?;
    let probs = predict_proba(&mlp, &x, 7, &Device::Cpu)?;
    assert_eq!(probs.dim(), (40, 2));
    assert!(probs.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-6));
    let Inputs::Dense(rows) = &x else { unreachable!() };
    let reversed = Inputs::Dense(rows.slice(ndarray::s![..;-1, ..]).to_owned());
    let back = predict_proba(&mlp, &reversed, 64, &Device::Cpu)?;
    // Different batch sizes may round differently in the GEMM, so equal to 1e-6, not bitwise.
    let diff = (&back.slice(ndarray::s![..;-1, ..]) - &probs).mapv(f64::abs).fold(0.0, |m: f64, &v| m.max(v));
    assert!(diff < 1e-6, "order or batching changed a row by {diff}");
    Ok(())
}

#[test]
fn same_seeds_give_the_same_losses_and_another_seed_differs() -> Result<()> {
    let (x, y) = cluster_pairs(7, 200);
    let options = FitOptions { epochs: 3, ..mlp_options(8) };
    let run = |init: u64, options: &FitOptions| -> Result<Vec<u64>> {
        let (mlp, vars) = small_mlp(init)?;
        let report = fit(&mlp, &vars, (&x, &y), None, options)?;
        Ok(report.epochs.iter().map(|e| e.train_loss.to_bits()).collect())
    };
    let first = run(1, &options)?;
    assert_eq!(first, run(1, &options)?);
    assert_ne!(first, run(1, &FitOptions { seed: 9, ..options.clone() })?, "the fit seed changed nothing");
    assert_ne!(first, run(2, &options)?, "the init seed changed nothing");
    Ok(())
}

#[test]
fn early_stopping_restores_the_best_epochs_weights() -> Result<()> {
    let (x, y) = cluster_pairs(10, 300);
    // Valid labels flipped: the better the model learns, the worse its valid accuracy, so the best
    // epoch is 1 and patience 2 stops after epoch 3.
    let flipped: Vec<usize> = y.iter().map(|l| 1 - l).collect();
    let options = FitOptions { epochs: 10, patience: Some(2), ..mlp_options(11) };
    let (mlp, vars) = small_mlp(12)?;
    let report = fit(&mlp, &vars, (&x, &y), Some((&x, &flipped)), &options)?;
    let accs: Vec<f64> = report.epochs.iter().map(|e| e.valid_accuracy.unwrap()).collect();
    eprintln!("flipped-label valid accuracy per epoch: {accs:.3?}");
    assert_eq!(report.best_epoch, 1);
    assert_eq!(report.epochs.len(), 3);
    let restored = predict_proba(&mlp, &x, 64, &Device::Cpu)?;

    // The same seeds stopped by hand after epoch 1 (and after epoch 3) without a valid set.
    let after = |epochs: usize| -> Result<Array2<f64>> {
        let (mlp, vars) = small_mlp(12)?;
        fit(&mlp, &vars, (&x, &y), None, &FitOptions { epochs, patience: None, ..options.clone() })?;
        predict_proba(&mlp, &x, 64, &Device::Cpu)
    };
    assert_eq!(restored, after(1)?, "the restored weights are not epoch 1's");
    assert_ne!(restored, after(3)?, "nothing was restored");
    Ok(())
}

#[test]
fn bad_input_is_an_error_naming_the_row() -> Result<()> {
    let (x, y) = cluster_pairs(13, 20);
    let (mlp, vars) = small_mlp(14)?;
    let options = FitOptions { epochs: 1, ..FitOptions::default() };
    let error = |train: (&Inputs, &[usize]), options: &FitOptions| -> String {
        fit(&mlp, &vars, train, None, options).unwrap_err().to_string()
    };
    let mut bad = y.clone();
    bad[7] = 2;
    let e = error((&x, &bad), &options);
    assert!(e.contains("row 7") && e.contains("label 2"), "{e}");
    let e = error((&x, &y[..19]), &options);
    assert!(e.contains("20 inputs but 19 labels"), "{e}");
    let e = error((&Inputs::Dense(Array2::zeros((0, 12))), &[]), &options);
    assert!(e.contains("no examples"), "{e}");
    let Inputs::Dense(rows) = &x else { unreachable!() };
    let mut nan = rows.clone();
    nan[[4, 3]] = f32::NAN;
    let e = error((&Inputs::Dense(nan), &y), &options);
    assert!(e.contains("row 4") && e.contains("not finite"), "{e}");
    let e = error((&x, &y), &FitOptions { batch_size: 0, ..options.clone() });
    assert!(e.contains("batch_size"), "{e}");
    let e = error((&x, &y), &FitOptions { patience: Some(2), ..options.clone() });
    assert!(e.contains("valid"), "{e}");
    let e = fit(&mlp, &vars, (&x, &y), Some((&x, &bad)), &options).unwrap_err().to_string();
    assert!(e.contains("valid row 7"), "{e}");
    let wide = Inputs::Dense(Array2::zeros((20, 13)));
    assert!(fit(&mlp, &vars, (&wide, &y), None, &options).is_err());
    assert_eq!(mlp.n_classes(), 2);
    Ok(())
}
