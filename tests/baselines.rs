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

// ---- the CNNs ----

use protein_lm::models::baselines::cnn::{
    deepfam_parameters, simple_cnn_parameters, DeepFam, DeepFamConfig, SimpleCnn, SimpleCnnConfig,
};
use protein_lm::models::baselines::one_hot_batch;

const RESIDUES: &[u8] = b"ACDEFGHIKLMNPQRSTVWY";
/// Two motifs with the same residues in different orders, so residue counts cannot tell the
/// classes apart: only an ordered pattern detector can.
const MOTIFS: [&str; 2] = ["WCMWH", "HMWCW"];

/// Random sequences of 30–60 residues; class 0 has no motif, class c > 0 has `MOTIFS[c − 1]`
/// planted at a random position.
fn motif_sequences(seed: u64, n: usize) -> (Inputs, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let mut sequences = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    while sequences.len() < n {
        let len = 30 + rng.index(31);
        let mut s: String = (0..len).map(|_| RESIDUES[rng.index(20)] as char).collect();
        let label = rng.index(3);
        if label > 0 {
            let at = rng.index(len - 5);
            s.replace_range(at..at + 5, MOTIFS[label - 1]);
        }
        // A random sequence holding a motif by chance (p ≈ 1e-4) would be mislabelled.
        let found: Vec<usize> = (0..2).filter(|&m| s.contains(MOTIFS[m])).map(|m| m + 1).collect();
        if found == (label > 0).then_some(label).into_iter().collect::<Vec<_>>() {
            sequences.push(s);
            labels.push(label);
        }
    }
    (Inputs::Sequences { sequences, max_len: 64 }, labels)
}

fn small_simple_cnn(seed: u64) -> Result<(SimpleCnn, SeededVarMap)> {
    let vars = SeededVarMap::new(seed);
    let config =
        SimpleCnnConfig { channels: 16, kernel_size: 5, layers: 4, pool_between: true, n_classes: 3, dropout: 0.1 };
    Ok((SimpleCnn::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?, vars))
}

fn small_deepfam(seed: u64) -> Result<(DeepFam, SeededVarMap)> {
    let vars = SeededVarMap::new(seed);
    let config = DeepFamConfig { kernel_sizes: vec![4, 8], units: 16, hidden: Some(32), n_classes: 3, dropout: 0.1 };
    Ok((DeepFam::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?, vars))
}

fn cnn_options(seed: u64, epochs: usize) -> FitOptions {
    FitOptions { epochs, batch_size: 16, lr: 5e-3, seed, ..FitOptions::default() }
}

fn learns_the_motifs(model: &dyn Classifier, vars: &SeededVarMap, name: &str, epochs: usize) -> Result<()> {
    let (train_x, train_y) = motif_sequences(21, 300);
    let (test_x, test_y) = motif_sequences(22, 150);
    let before = accuracy(model, &test_x, &test_y, 64, &Device::Cpu)?;
    let report = fit(model, vars, (&train_x, &train_y), None, &cnn_options(23, epochs))?;
    let after = accuracy(model, &test_x, &test_y, 64, &Device::Cpu)?;
    let losses: Vec<f64> = report.epochs.iter().map(|e| e.train_loss).collect();
    eprintln!(
        "{name} on planted motifs: held-out accuracy {before:.3} -> {after:.3} in {:.1} s, losses {losses:.3?}",
        report.seconds
    );
    assert!(after >= 0.9, "{name}: held-out accuracy {after}");
    Ok(())
}

#[test]
fn simple_cnn_learns_planted_motifs() -> Result<()> {
    let (cnn, vars) = small_simple_cnn(24)?;
    learns_the_motifs(&cnn, &vars, "simple CNN", 12)
}

#[test]
fn deepfam_learns_planted_motifs() -> Result<()> {
    let (deepfam, vars) = small_deepfam(25)?;
    learns_the_motifs(&deepfam, &vars, "DeepFam", 12)
}

#[test]
fn cnn_logits_have_the_right_shape_and_ignore_padding() -> Result<()> {
    let sequences = ["MKTAYIAKQR", "GX", "WCMWHWCMWHAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"];
    // The longest sequence fills the short batch: its padding-free encoding against 90 padded
    // positions, where unmasked ReLU outputs of edge windows would enter the max.
    let short = one_hot_batch(&sequences, sequences[2].len(), &Device::Cpu)?;
    let long = one_hot_batch(&sequences, 131, &Device::Cpu)?;
    let (cnn, _) = small_simple_cnn(26)?;
    let (deepfam, _) = small_deepfam(27)?;
    let no_hidden = DeepFamConfig {
        hidden: None,
        ..DeepFamConfig { kernel_sizes: vec![3], units: 5, hidden: None, n_classes: 4, dropout: 0.0 }
    };
    let plain = DeepFam::new(SeededVarMap::new(28).var_builder(DType::F32, &Device::Cpu), &no_hidden)?;
    for (name, model, classes) in
        [("simple CNN", &cnn as &dyn Classifier, 3), ("DeepFam", &deepfam, 3), ("DeepFam without hidden", &plain, 4)]
    {
        let a = model.logits(&short, false, None)?;
        let b = model.logits(&long, false, None)?;
        assert_eq!(a.dims(), [3, classes], "{name}");
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{name}: padding to 131 moved a logit by {diff}");
    }
    Ok(())
}

#[test]
fn cnn_parameter_counts_equal_the_formula() -> Result<()> {
    let (_, vars) = small_simple_cnn(29)?;
    // 21·16·5 + 16, then 3 × (16·16·5 + 16), then 16·3 + 3.
    assert_eq!(vars.num_parameters(), 1696 + 3 * 1296 + 51);
    let (cnn, _) = small_simple_cnn(29)?;
    assert_eq!(simple_cnn_parameters(cnn.config()), vars.num_parameters());
    let (deepfam, vars) = small_deepfam(30)?;
    // (21·16·4 + 16) + (21·16·8 + 16), then 32·32 + 32, then 32·3 + 3.
    assert_eq!(vars.num_parameters(), 1360 + 2704 + 1056 + 99);
    assert_eq!(deepfam_parameters(deepfam.config()), vars.num_parameters());

    let paper = DeepFamConfig::paper(100);
    assert_eq!(paper.kernel_sizes, [8, 12, 16, 20, 24, 28, 32, 36]);
    assert_eq!((paper.units, paper.hidden, paper.feature_width()), (250, Some(2000), 2000));
    // Σk = 176: 21·250·176 + 8·250 conv, 2000·2000 + 2000 hidden, 2000·100 + 100 out.
    assert_eq!(deepfam_parameters(&paper), 926_000 + 4_002_000 + 200_100);
    let built = SeededVarMap::new(0);
    DeepFam::new(built.var_builder(DType::F32, &Device::Cpu), &DeepFamConfig::paper(100))?;
    assert_eq!(built.num_parameters(), deepfam_parameters(&paper));
    let simple = SimpleCnnConfig::new(10);
    assert_eq!((simple.layers, simple.channels), (4, 128));
    assert_eq!(simple_cnn_parameters(&simple), 21 * 128 * 9 + 128 + 3 * (128 * 128 * 9 + 128) + 1290);
    Ok(())
}

#[test]
fn cnn_fit_is_deterministic_and_bad_sequences_input_errors() -> Result<()> {
    let (x, y) = motif_sequences(31, 60);
    let run = |seed: u64| -> Result<Vec<u64>> {
        let (deepfam, vars) = small_deepfam(32)?;
        let report = fit(&deepfam, &vars, (&x, &y), None, &cnn_options(seed, 2))?;
        Ok(report.epochs.iter().map(|e| e.train_loss.to_bits()).collect())
    };
    assert_eq!(run(1)?, run(1)?);
    assert_ne!(run(1)?, run(2)?);
    let (cnn, vars) = small_simple_cnn(33)?;
    let Inputs::Sequences { sequences, .. } = &x else { unreachable!() };
    let zero = Inputs::Sequences { sequences: sequences.clone(), max_len: 0 };
    let e = fit(&cnn, &vars, (&zero, &y), None, &cnn_options(1, 1)).unwrap_err().to_string();
    assert!(e.contains("max_len"), "{e}");
    let mut bad = y.clone();
    bad[59] = 3;
    let e = fit(&cnn, &vars, (&x, &bad), None, &cnn_options(1, 1)).unwrap_err().to_string();
    assert!(e.contains("row 59") && e.contains("3 classes"), "{e}");
    Ok(())
}

/// The cost of one DeepFam epoch at the demo's size, for sizing notebooks: run with
/// `cargo test --release --test baselines -- --ignored --nocapture`.
#[test]
#[ignore = "timing, release build only"]
fn deepfam_epoch_timing() -> Result<()> {
    let mut rng = Rng::new(40);
    let sequences: Vec<String> =
        (0..1000).map(|_| (0..512).map(|_| RESIDUES[rng.index(20)] as char).collect()).collect();
    let labels: Vec<usize> = (0..1000).map(|_| rng.index(10)).collect();
    let inputs = Inputs::Sequences { sequences, max_len: 512 };
    let vars = SeededVarMap::new(41);
    let config = DeepFamConfig { units: 64, ..DeepFamConfig::paper(10) };
    let deepfam = DeepFam::new(vars.var_builder(DType::F32, &Device::Cpu), &config)?;
    let options = FitOptions { epochs: 1, batch_size: 32, ..FitOptions::default() };
    let report = fit(&deepfam, &vars, (&inputs, &labels), None, &options)?;
    eprintln!(
        "DeepFam units 64 (kernels 8..36, hidden 2,000, {} parameters), 1,000 × 512 residues, batch 32, 1 epoch: {:.1} s on {} threads",
        vars.num_parameters(),
        report.seconds,
        rayon::current_num_threads()
    );
    Ok(())
}
