//! The one place that chooses where tensors live. Device and dtype are picked once (from the command
//! line or a notebook) and passed down; no module decides them on its own.

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// Which device to run on.
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
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(n) => {
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::invalid(
                    "a CUDA device was requested but this build has no CUDA: rebuild with `--features cuda`",
                ));
            }
            Ok(Device::new_cuda(n)?)
        }
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                match Device::new_cuda(0) {
                    Ok(d) => return Ok(d),
                    Err(e) => eprintln!("note: CUDA build but no usable GPU ({e}); running on the CPU"),
                }
            }
            Ok(Device::Cpu)
        }
    }
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
}
