//! The part of LiteRT's C API that fogd calls, mirrored from the headers in `litert/c/` of
//! google-ai-edge/LiteRT as `libLiteRt.so` 2.x exports it, and resolved from the library
//! at run time. Nothing outside `inference` sees these types.

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

use libloading::Library;
use thiserror::Error;

/// Why the LiteRT library could not be used.
#[derive(Debug, Error)]
pub enum LibraryError {
    #[error("{path} (from {named_by}) does not exist")]
    Missing {
        path: String,
        named_by: &'static str,
    },
    #[error(
        "libLiteRt.so not found: set inference.runtime or {env}, or install it in one of \
         {locations} (models/fetch-runtime.sh fetches it)"
    )]
    NotFound {
        env: &'static str,
        locations: String,
    },
    #[error("cannot load {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("{path} does not export {symbol}")]
    MissingSymbol { path: String, symbol: &'static str },
}

pub type Status = c_int;
pub const STATUS_OK: Status = 0;

pub type ParamIndex = usize;
pub type Environment = *mut c_void;
pub type Model = *mut c_void;
pub type Signature = *mut c_void;
pub type Tensor = *mut c_void;
pub type Options = *mut c_void;
pub type CompiledModel = *mut c_void;
pub type TensorBuffer = *mut c_void;
pub type BufferRequirements = *mut c_void;

/// `LiteRtHwAccelerators::kLiteRtHwAcceleratorCpu`.
pub const ACCELERATOR_CPU: c_int = 1;
/// `kLiteRtTensorBufferLockModeRead` / `...Write`.
pub const LOCK_READ: c_int = 0;
pub const LOCK_WRITE: c_int = 1;
/// `kLiteRtQuantizationPerTensor`.
pub const QUANTIZATION_PER_TENSOR: c_int = 1;
/// `LITERT_HOST_MEMORY_BUFFER_ALIGNMENT`: host memory handed to LiteRT must be this aligned.
pub const HOST_MEMORY_ALIGNMENT: usize = 64;
pub const MAX_RANK: usize = 8;

/// `kLiteRtEnvOptionTag*` values fogd sets.
pub const ENV_AUTO_REGISTER_ACCELERATORS: c_int = 24;
pub const ENV_MIN_LOGGER_SEVERITY: c_int = 25;
/// `kLiteRtLogSeveritySilent`: fogd reports failures itself, with context.
pub const LOG_SEVERITY_SILENT: i64 = 4;
/// `kLiteRtAnyTypeInt`.
const ANY_TYPE_INT: c_int = 2;

/// `LiteRtAny`: a tag and an 8-byte union (only the integer member is used here).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Any {
    pub kind: c_int,
    pub int_value: i64,
}

/// `LiteRtEnvOption`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvOption {
    pub tag: c_int,
    pub value: Any,
}

impl EnvOption {
    pub fn int(tag: c_int, value: i64) -> Self {
        Self {
            tag,
            value: Any {
                kind: ANY_TYPE_INT,
                int_value: value,
            },
        }
    }
}

/// `LiteRtLayout`: `unsigned rank : 7; bool has_strides : 1;` share the first 32-bit unit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub rank_and_flags: u32,
    pub dimensions: [i32; MAX_RANK],
    pub strides: [u32; MAX_RANK],
}

impl Layout {
    pub fn rank(&self) -> usize {
        (self.rank_and_flags & 0x7f) as usize
    }

    pub fn dims(&self) -> &[i32] {
        &self.dimensions[..self.rank().min(MAX_RANK)]
    }
}

/// `LiteRtRankedTensorType`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RankedTensorType {
    pub element_type: c_int,
    pub layout: Layout,
}

/// `LiteRtQuantizationPerTensor`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct QuantizationPerTensor {
    pub scale: f32,
    pub zero_point: i64,
}

// The sizes and offsets the headers assert on 64-bit targets; the 32-bit ones follow from
// the same C layout rules.
const _: () = {
    assert!(std::mem::size_of::<Layout>() == 68);
    assert!(std::mem::size_of::<RankedTensorType>() == 72);
    assert!(std::mem::offset_of!(RankedTensorType, layout) == 4);
    assert!(std::mem::size_of::<QuantizationPerTensor>() == 16);
    assert!(std::mem::offset_of!(QuantizationPerTensor, zero_point) == 8);
    #[cfg(target_pointer_width = "64")]
    assert!(std::mem::size_of::<EnvOption>() == 24);
    #[cfg(target_pointer_width = "64")]
    assert!(std::mem::offset_of!(EnvOption, value) == 8);
};

type HostMemoryDeallocator = Option<unsafe extern "C" fn(*mut c_void)>;

/// Resolved entry points. The `Library` is kept so the pointers stay valid.
pub struct Api {
    _library: Library,
    pub create_environment:
        unsafe extern "C" fn(c_int, *const EnvOption, *mut Environment) -> Status,
    pub destroy_environment: unsafe extern "C" fn(Environment),
    pub create_model_from_buffer:
        unsafe extern "C" fn(Environment, *const c_void, usize, *mut Model) -> Status,
    pub destroy_model: unsafe extern "C" fn(Model),
    pub get_num_model_signatures: unsafe extern "C" fn(Model, *mut ParamIndex) -> Status,
    pub get_model_signature: unsafe extern "C" fn(Model, ParamIndex, *mut Signature) -> Status,
    pub get_num_signature_inputs: unsafe extern "C" fn(Signature, *mut ParamIndex) -> Status,
    pub get_num_signature_outputs: unsafe extern "C" fn(Signature, *mut ParamIndex) -> Status,
    pub get_signature_input_name:
        unsafe extern "C" fn(Signature, ParamIndex, *mut *const c_char) -> Status,
    pub get_signature_output_name:
        unsafe extern "C" fn(Signature, ParamIndex, *mut *const c_char) -> Status,
    pub get_signature_input_tensor_by_index:
        unsafe extern "C" fn(Signature, ParamIndex, *mut Tensor) -> Status,
    pub get_signature_output_tensor_by_index:
        unsafe extern "C" fn(Signature, ParamIndex, *mut Tensor) -> Status,
    pub get_ranked_tensor_type: unsafe extern "C" fn(Tensor, *mut RankedTensorType) -> Status,
    pub get_quantization_type_id: unsafe extern "C" fn(Tensor, *mut c_int) -> Status,
    pub get_per_tensor_quantization:
        unsafe extern "C" fn(Tensor, *mut QuantizationPerTensor) -> Status,
    pub create_options: unsafe extern "C" fn(*mut Options) -> Status,
    pub destroy_options: unsafe extern "C" fn(Options),
    pub set_options_hardware_accelerators: unsafe extern "C" fn(Options, c_int) -> Status,
    pub create_compiled_model:
        unsafe extern "C" fn(Environment, Model, Options, *mut CompiledModel) -> Status,
    pub destroy_compiled_model: unsafe extern "C" fn(CompiledModel),
    pub get_compiled_model_input_buffer_requirements: unsafe extern "C" fn(
        CompiledModel,
        ParamIndex,
        ParamIndex,
        *mut BufferRequirements,
    ) -> Status,
    pub get_compiled_model_output_buffer_requirements: unsafe extern "C" fn(
        CompiledModel,
        ParamIndex,
        ParamIndex,
        *mut BufferRequirements,
    ) -> Status,
    pub get_buffer_requirements_size:
        unsafe extern "C" fn(BufferRequirements, *mut usize) -> Status,
    pub get_compiled_model_input_tensor_layout:
        unsafe extern "C" fn(CompiledModel, ParamIndex, ParamIndex, *mut Layout) -> Status,
    pub get_compiled_model_output_tensor_layouts:
        unsafe extern "C" fn(CompiledModel, ParamIndex, usize, *mut Layout, bool) -> Status,
    pub create_tensor_buffer_from_host_memory: unsafe extern "C" fn(
        *const RankedTensorType,
        *mut c_void,
        usize,
        HostMemoryDeallocator,
        *mut TensorBuffer,
    ) -> Status,
    pub destroy_tensor_buffer: unsafe extern "C" fn(TensorBuffer),
    pub lock_tensor_buffer: unsafe extern "C" fn(TensorBuffer, *mut *mut c_void, c_int) -> Status,
    pub unlock_tensor_buffer: unsafe extern "C" fn(TensorBuffer) -> Status,
    pub run_compiled_model: unsafe extern "C" fn(
        CompiledModel,
        ParamIndex,
        usize,
        *mut TensorBuffer,
        usize,
        *mut TensorBuffer,
    ) -> Status,
}

impl Api {
    /// Opens the library and resolves every entry point; fails on the first one missing.
    pub fn open(path: &Path) -> Result<Self, LibraryError> {
        // SAFETY: loading runs the library's initialisers; libLiteRt's only register its
        // built-in ops and accelerators.
        let library = unsafe { Library::new(path) }.map_err(|error| LibraryError::Open {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: each field's type is the C signature of the symbol it names, as
                // declared in the LiteRT headers; the pointer lives as long as `library`.
                unsafe {
                    *library.get(concat!($name, "\0").as_bytes()).map_err(|_| {
                        LibraryError::MissingSymbol {
                            path: path.display().to_string(),
                            symbol: $name,
                        }
                    })?
                }
            };
        }
        Ok(Self {
            create_environment: symbol!("LiteRtCreateEnvironment"),
            destroy_environment: symbol!("LiteRtDestroyEnvironment"),
            create_model_from_buffer: symbol!("LiteRtCreateModelFromBuffer"),
            destroy_model: symbol!("LiteRtDestroyModel"),
            get_num_model_signatures: symbol!("LiteRtGetNumModelSignatures"),
            get_model_signature: symbol!("LiteRtGetModelSignature"),
            get_num_signature_inputs: symbol!("LiteRtGetNumSignatureInputs"),
            get_num_signature_outputs: symbol!("LiteRtGetNumSignatureOutputs"),
            get_signature_input_name: symbol!("LiteRtGetSignatureInputName"),
            get_signature_output_name: symbol!("LiteRtGetSignatureOutputName"),
            get_signature_input_tensor_by_index: symbol!("LiteRtGetSignatureInputTensorByIndex"),
            get_signature_output_tensor_by_index: symbol!("LiteRtGetSignatureOutputTensorByIndex"),
            get_ranked_tensor_type: symbol!("LiteRtGetRankedTensorType"),
            get_quantization_type_id: symbol!("LiteRtGetQuantizationTypeId"),
            get_per_tensor_quantization: symbol!("LiteRtGetPerTensorQuantization"),
            create_options: symbol!("LiteRtCreateOptions"),
            destroy_options: symbol!("LiteRtDestroyOptions"),
            set_options_hardware_accelerators: symbol!("LiteRtSetOptionsHardwareAccelerators"),
            create_compiled_model: symbol!("LiteRtCreateCompiledModel"),
            destroy_compiled_model: symbol!("LiteRtDestroyCompiledModel"),
            get_compiled_model_input_buffer_requirements: symbol!(
                "LiteRtGetCompiledModelInputBufferRequirements"
            ),
            get_compiled_model_output_buffer_requirements: symbol!(
                "LiteRtGetCompiledModelOutputBufferRequirements"
            ),
            get_buffer_requirements_size: symbol!("LiteRtGetTensorBufferRequirementsBufferSize"),
            get_compiled_model_input_tensor_layout: symbol!(
                "LiteRtGetCompiledModelInputTensorLayout"
            ),
            get_compiled_model_output_tensor_layouts: symbol!(
                "LiteRtGetCompiledModelOutputTensorLayouts"
            ),
            create_tensor_buffer_from_host_memory: symbol!(
                "LiteRtCreateTensorBufferFromHostMemory"
            ),
            destroy_tensor_buffer: symbol!("LiteRtDestroyTensorBuffer"),
            lock_tensor_buffer: symbol!("LiteRtLockTensorBuffer"),
            unlock_tensor_buffer: symbol!("LiteRtUnlockTensorBuffer"),
            run_compiled_model: symbol!("LiteRtRunCompiledModel"),
            _library: library,
        })
    }
}

/// `LiteRtGetStatusString` is declared but not exported, so the names live here.
pub fn status_name(status: Status) -> &'static str {
    match status {
        0 => "ok",
        1 => "invalid argument",
        2 => "memory allocation failure",
        3 => "runtime failure",
        4 => "missing input tensor",
        5 => "unsupported",
        6 => "not found",
        7 => "timeout expired",
        8 => "wrong version",
        9 => "unknown error",
        10 => "already exists",
        100 => "cancelled",
        500 => "file I/O error",
        501 => "invalid flatbuffer",
        502 => "dynamic loading error",
        503 => "serialization error",
        504 => "compilation error",
        1000 => "index out of bounds",
        1001 => "invalid IR type",
        1002 => "invalid graph invariant",
        1003 => "graph modification error",
        4000 => "unsupported runtime version",
        4001 => "unsupported compiler version",
        4002 => "incompatible byte code version",
        5000 => "unsupported op shape inferer",
        5001 => "shape inference failed",
        _ => "unrecognised status",
    }
}
