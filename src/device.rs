//! The one place that chooses where tensors live. Device and dtype are picked once (from the command
//! line or a notebook) and passed down; no module decides them on its own.

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// Which device to run on.
///
/// ```
/// use protein_lm::device::DeviceChoice;
/// // As the command line's `--device` reads it.
/// assert_eq!("cuda:1".parse::<DeviceChoice>()?, DeviceChoice::Cuda(1));
/// assert_eq!("CPU".parse::<DeviceChoice>()?, DeviceChoice::Cpu);
/// assert_eq!(DeviceChoice::default(), DeviceChoice::Auto);
/// assert!("tpu".parse::<DeviceChoice>().is_err());
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DeviceChoice {
    /// CUDA device 0 when the crate was built with `--features cuda` and a GPU answers, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by ordinal; an error when the build has no CUDA or the device is absent.
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => Ok(DeviceChoice::Cuda(n)),
                None => Err(Error::invalid(format!("device `{s}`: expected auto, cpu, cuda or cuda:N"))),
            },
        }
    }
}

/// The device for a choice. `Auto` falls back to the CPU (and says so on stderr) when CUDA is not
/// available; an explicit `Cuda(n)` never falls back silently.
///
/// ```
/// use protein_lm::device::{select_device, DeviceChoice};
/// assert!(select_device(DeviceChoice::Cpu)?.is_cpu());
/// // Auto takes a GPU when the build and the machine have one, else the CPU; never an error.
/// let device = select_device(DeviceChoice::Auto)?;
/// println!("running on {device:?}");
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(n) => {
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::invalid(
                    "a CUDA device was requested but this build has no CUDA: rebuild with `--features cuda` \
                     (scripts/cuda/build.sh), or pass --device cpu",
                ));
            }
            Device::new_cuda(n).map_err(|e| {
                Error::invalid(format!(
                    "CUDA device {n} was requested but cannot be used ({e}); is there a GPU and its driver? \
                     pass --device cpu to run on the CPU"
                ))
            })
        }
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                match Device::new_cuda(0) {
                    Ok(d) => return Ok(d),
                    Err(e) => {
                        eprintln!("note: --device auto: CUDA build but no usable GPU ({e}); falling back to the CPU")
                    }
                }
            }
            Ok(Device::Cpu)
        }
    }
}

/// What a device is, for the line a command prints on start: `cpu (2 threads)` or
/// `cuda:0 (NVIDIA H100 80GB HBM3)`.
///
/// ```
/// use candle_core::Device;
/// assert!(protein_lm::device::describe(&Device::Cpu).starts_with("cpu ("));
/// ```
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", candle_core::utils::get_num_threads()),
        #[cfg(feature = "cuda")]
        Device::Cuda(cuda) => {
            let stream = cuda.cuda_stream();
            let context = stream.context();
            let name = context.name().unwrap_or_else(|e| format!("name unknown: {e:?}"));
            format!("cuda:{} ({name})", context.ordinal())
        }
        other => format!("{other:?}"),
    }
}

/// The line a command prints (on stderr) before it computes: which device and dtype it uses.
///
/// ```
/// use candle_core::{DType, Device};
/// assert!(protein_lm::device::announcement(&Device::Cpu, DType::BF16).ends_with("dtype bf16"));
/// ```
pub fn announcement(device: &Device, dtype: DType) -> String {
    format!("protein-lm: device {}, dtype {}", describe(device), dtype.as_str())
}

/// Parse a dtype name (f32, f16, bf16, f64).
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f64" | "float64" => Ok(DType::F64),
        other => Err(Error::invalid(format!("dtype `{other}`: expected f32, f16, bf16 or f64"))),
    }
}

/// Makes the CPU flush subnormal floats to zero (FTZ) and read them as zero (DAZ), on the calling
/// thread, on every thread of rayon's global pool (the one candle's matmuls and this crate's
/// kernels run on) and on candle's own pool (its elementwise ops: half of every add or multiply
/// ran there without the flags).
///
/// Why: subnormals are handled by microcode on x86, up to a hundred times slower than normal
/// floats, and masked-LM training makes plenty of them (softmax tails, tiny gradients of rare
/// pieces). On the 2-core machine one demo-size PRoBERTa update on real proteins took 6.1 s
/// without this and 1.2 s with it. TensorFlow sets the same flags on its CPU threads; the values
/// that change are below 1.2e-38. Idempotent and cheap; a no-op off x86-64.
pub fn flush_denormals_to_zero() {
    #[cfg(target_arch = "x86_64")]
    {
        fn set_flags() {
            // MXCSR bit 15 = FTZ, bit 6 = DAZ. SSE2 is part of x86-64, so the register exists.
            #[allow(deprecated)]
            unsafe {
                use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
                _mm_setcsr(_mm_getcsr() | 0x8040)
            }
        }
        set_flags();
        rayon::broadcast(|_| set_flags());
        candle_core::utils::barrier_pool().execute(|_| set_flags());
    }
}

/// Lets candle's idle pool threads sleep after 100 spins instead of 25,000, unless the user set
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT`. candle's elementwise ops share their work with that pool, and
/// its spinning between ops takes the cores from rayon's threads (the GEMMs and this crate's
/// kernels): on 2 cores 9 % of a ProteinBERT training step's samples waited in candle's barrier.
/// The variable is read when the pool starts, so call this first, while the process has one
/// thread (the binary's `main` and the benchmarks do): setting the environment is not safe beside
/// threads that read it.
pub fn park_idle_candle_threads() {
    const SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(SPIN_LIMIT).is_none() {
        std::env::set_var(SPIN_LIMIT, "100");
    }
}

/// Whether the calling thread flushes subnormals to zero (see [`flush_denormals_to_zero`]).
pub fn denormals_flushed() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(deprecated)]
        let csr = unsafe { std::arch::x86_64::_mm_getcsr() };
        csr & 0x8040 == 0x8040
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_cpu_builds_fall_back() {
        assert_eq!("cuda:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(1));
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!(select_device(DeviceChoice::Cpu).unwrap().is_cpu());
        if !candle_core::utils::cuda_is_available() {
            assert!(select_device(DeviceChoice::Auto).unwrap().is_cpu());
            let e = select_device(DeviceChoice::Cuda(0)).unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert!(parse_dtype("int8").is_err());
    }

    #[test]
    fn subnormals_flush_to_zero_on_every_pool_thread() {
        flush_denormals_to_zero();
        assert!(denormals_flushed() || !cfg!(target_arch = "x86_64"));
        let flags: Vec<bool> = rayon::broadcast(|_| denormals_flushed());
        assert!(flags.iter().all(|&f| f) || !cfg!(target_arch = "x86_64"), "{flags:?}");
        if cfg!(target_arch = "x86_64") {
            // f32::MIN_POSITIVE / 4 is subnormal: read as zero under DAZ, and the product of two
            // small normals (1e-30) underflows to zero under FTZ rather than to a subnormal.
            let tiny = std::hint::black_box(f32::MIN_POSITIVE / 4.0);
            assert_eq!(std::hint::black_box(tiny) * 2.0, 0.0);
            let small = std::hint::black_box(1e-20f32);
            assert_eq!(small * small, 0.0);
        }
    }
}
