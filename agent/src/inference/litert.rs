//! A safe face on LiteRT: the loaded library with its environment, models compiled from
//! memory-mapped files, and invokers that own a compiled model plus aligned host buffers.

use std::alloc::{self, Layout as AllocLayout};
use std::ffi::{CStr, c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, Mutex};

use super::InferenceError;
use super::ffi::{self, Api, LibraryError, Status};
use super::tensor::{ElementType, Quantization, TensorSpec};

/// How LiteRT's own stderr lines are labelled in fogd's log.
const LIBRARY: &str = "litert";

/// Where fogd looks for `libLiteRt.so` after the configured path and `FOGD_LITERT_LIB`.
pub const STANDARD_LOCATIONS: &[&str] = &[
    "/usr/lib/fogd/libLiteRt.so",
    "/usr/local/lib/libLiteRt.so",
    "/usr/lib/libLiteRt.so",
    "/usr/lib/x86_64-linux-gnu/libLiteRt.so",
    "/usr/lib/aarch64-linux-gnu/libLiteRt.so",
];

/// The environment variable that names the runtime library.
pub const LIBRARY_ENV: &str = "FOGD_LITERT_LIB";

/// Picks the library: the configured path, then `FOGD_LITERT_LIB`, then the standard
/// locations. A configured or named path that does not exist is an error, not skipped.
pub fn locate_library(configured: Option<&Path>) -> Result<PathBuf, LibraryError> {
    let named = configured
        .map(|p| (p.to_path_buf(), "inference.runtime"))
        .or_else(|| std::env::var_os(LIBRARY_ENV).map(|p| (PathBuf::from(p), LIBRARY_ENV)));
    if let Some((path, source)) = named {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(LibraryError::Missing {
                path: path.display().to_string(),
                named_by: source,
            })
        };
    }
    STANDARD_LOCATIONS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| LibraryError::NotFound {
            env: LIBRARY_ENV,
            locations: STANDARD_LOCATIONS.join(", "),
        })
}

fn check(call: &'static str, status: Status) -> Result<(), InferenceError> {
    if status == ffi::STATUS_OK {
        Ok(())
    } else {
        Err(InferenceError::Runtime {
            call,
            status: ffi::status_name(status),
        })
    }
}

/// The loaded library and one LiteRT environment shared by every model.
pub struct LiteRt {
    api: Api,
    environment: ffi::Environment,
    path: PathBuf,
}

// SAFETY: the environment is created once and only read by LiteRT after that; fogd
// serialises model compilation (see `LoadedModel::compile_lock`).
unsafe impl Send for LiteRt {}
unsafe impl Sync for LiteRt {}

impl LiteRt {
    pub fn open(path: &Path) -> Result<Arc<Self>, InferenceError> {
        let api =
            Api::open(path).map_err(|error| InferenceError::Unavailable(error.to_string()))?;
        // Only the CPU accelerator: probing GPU and NPU plugins slows start-up and finds
        // nothing on a gateway.
        let options = [
            ffi::EnvOption::int(
                ffi::ENV_AUTO_REGISTER_ACCELERATORS,
                i64::from(ffi::ACCELERATOR_CPU),
            ),
            ffi::EnvOption::int(ffi::ENV_MIN_LOGGER_SEVERITY, ffi::LOG_SEVERITY_SILENT),
        ];
        let mut environment = ptr::null_mut();
        // SAFETY: `options` outlives the call; `environment` is a valid out pointer.
        let status = unsafe {
            (api.create_environment)(options.len() as i32, options.as_ptr(), &mut environment)
        };
        check("LiteRtCreateEnvironment", status)
            .map_err(|e| InferenceError::Unavailable(e.to_string()))?;
        Ok(Arc::new(Self {
            api,
            environment,
            path: path.to_path_buf(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LiteRt {
    fn drop(&mut self) {
        // SAFETY: every model holds an `Arc<LiteRt>`, so none outlives the environment.
        unsafe { (self.api.destroy_environment)(self.environment) }
    }
}

/// A model read from a validated, memory-mapped `.tflite` file, with its signature taken
/// from a first compilation. Runs go through a pool of invokers, one per concurrent caller.
pub struct LoadedModel {
    runtime: Arc<LiteRt>,
    raw: ffi::Model,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    pool: Mutex<Vec<Invoker>>,
    /// LiteRT does not promise that compiling twice from one model at once is safe.
    compile_lock: Mutex<()>,
    _bytes: Arc<memmap2::Mmap>,
}

// SAFETY: the raw model is only read after creation, and compilation is serialised.
unsafe impl Send for LoadedModel {}
unsafe impl Sync for LoadedModel {}

impl LoadedModel {
    /// Builds the model from `bytes` (which it keeps mapped) and compiles it once.
    pub fn new(runtime: Arc<LiteRt>, bytes: Arc<memmap2::Mmap>) -> Result<Self, InferenceError> {
        let api = &runtime.api;
        let mut raw = ptr::null_mut();
        // SAFETY: the buffer stays mapped for the model's lifetime (`_bytes`).
        let status = crate::telemetry::stderr::captured(LIBRARY, || unsafe {
            (api.create_model_from_buffer)(
                runtime.environment,
                bytes.as_ptr().cast(),
                bytes.len(),
                &mut raw,
            )
        });
        check("LiteRtCreateModelFromBuffer", status)?;
        let mut model = Self {
            runtime,
            raw,
            inputs: Vec::new(),
            outputs: Vec::new(),
            pool: Mutex::new(Vec::new()),
            compile_lock: Mutex::new(()),
            _bytes: bytes,
        };
        let first = model.compile_first()?;
        model.pool = Mutex::new(vec![first]);
        Ok(model)
    }

    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// Runs the model on raw input tensors (one byte slice per input, in order) and returns
    /// the raw outputs.
    pub fn run(&self, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, InferenceError> {
        if inputs.len() != self.inputs.len() {
            return Err(InferenceError::InvalidInput(format!(
                "the model takes {} input tensor(s), got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        for (spec, bytes) in self.inputs.iter().zip(inputs) {
            if bytes.len() != spec.byte_len() {
                return Err(InferenceError::InvalidInput(format!(
                    "input {:?} is {} {:?} ({} bytes), got {} bytes",
                    spec.name,
                    spec.element.as_str(),
                    spec.shape,
                    spec.byte_len(),
                    bytes.len()
                )));
            }
        }
        let pooled = self.pool.lock().map_err(|_| poisoned())?.pop();
        let mut invoker = match pooled {
            Some(invoker) => invoker,
            None => self.compile()?,
        };
        let result = invoker.run(&self.runtime.api, inputs);
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(invoker);
        }
        result
    }

    fn compile_first(&mut self) -> Result<Invoker, InferenceError> {
        let invoker = self.compile()?;
        let api = &self.runtime.api;
        let mut signature = ptr::null_mut();
        // SAFETY: `raw` is a valid model; signature 0 exists (checked by compile()).
        check("LiteRtGetModelSignature", unsafe {
            (api.get_model_signature)(self.raw, 0, &mut signature)
        })?;
        self.inputs = invoker
            .input_types
            .iter()
            .enumerate()
            .map(|(i, ty)| describe(api, signature, i, true, ty))
            .collect::<Result<_, _>>()?;
        self.outputs = invoker
            .output_types
            .iter()
            .enumerate()
            .map(|(i, ty)| describe(api, signature, i, false, ty))
            .collect::<Result<_, _>>()?;
        Ok(invoker)
    }

    fn compile(&self) -> Result<Invoker, InferenceError> {
        let _guard = self.compile_lock.lock().map_err(|_| poisoned())?;
        Invoker::new(&self.runtime, self.raw)
    }
}

impl Drop for LoadedModel {
    fn drop(&mut self) {
        let api = &self.runtime.api;
        if let Ok(pool) = self.pool.get_mut() {
            for invoker in pool.drain(..) {
                invoker.destroy(api);
            }
        }
        // SAFETY: no compiled model of this model is left.
        unsafe { (api.destroy_model)(self.raw) }
    }
}

fn poisoned() -> InferenceError {
    InferenceError::Runtime {
        call: "model pool",
        status: "poisoned by a panic",
    }
}

/// Names, shape (from the compiled model), type and quantization of one signature tensor.
fn describe(
    api: &Api,
    signature: ffi::Signature,
    index: usize,
    input: bool,
    compiled_type: &ffi::RankedTensorType,
) -> Result<TensorSpec, InferenceError> {
    let mut tensor = ptr::null_mut();
    let mut name: *const c_char = ptr::null();
    // SAFETY: `signature` is valid and `index` is below its input/output count.
    unsafe {
        if input {
            check(
                "LiteRtGetSignatureInputTensorByIndex",
                (api.get_signature_input_tensor_by_index)(signature, index, &mut tensor),
            )?;
            check(
                "LiteRtGetSignatureInputName",
                (api.get_signature_input_name)(signature, index, &mut name),
            )?;
        } else {
            check(
                "LiteRtGetSignatureOutputTensorByIndex",
                (api.get_signature_output_tensor_by_index)(signature, index, &mut tensor),
            )?;
            check(
                "LiteRtGetSignatureOutputName",
                (api.get_signature_output_name)(signature, index, &mut name),
            )?;
        }
    }
    let name = if name.is_null() {
        String::new()
    } else {
        // SAFETY: LiteRT returns a NUL-terminated string owned by the model.
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    };
    let element = ElementType::from_litert(compiled_type.element_type).ok_or_else(|| {
        InferenceError::Unsupported(format!(
            "tensor {name:?} has element type code {}; fogd supports int8, uint8 and float32",
            compiled_type.element_type
        ))
    })?;
    let mut quantization_kind = 0;
    // SAFETY: `tensor` is valid for the model's lifetime.
    check("LiteRtGetQuantizationTypeId", unsafe {
        (api.get_quantization_type_id)(tensor, &mut quantization_kind)
    })?;
    let quantization = if quantization_kind == ffi::QUANTIZATION_PER_TENSOR {
        let mut q = ffi::QuantizationPerTensor::default();
        // SAFETY: as above; the tensor has per-tensor quantization.
        check("LiteRtGetPerTensorQuantization", unsafe {
            (api.get_per_tensor_quantization)(tensor, &mut q)
        })?;
        Some(Quantization {
            scale: q.scale,
            zero_point: q.zero_point as i32,
        })
    } else {
        None
    };
    let shape = compiled_type
        .layout
        .dims()
        .iter()
        .map(|&d| u32::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            InferenceError::Unsupported(format!("tensor {name:?} keeps a dynamic dimension"))
        })?;
    Ok(TensorSpec {
        name,
        shape,
        element,
        quantization,
    })
}

/// A 64-byte aligned host allocation wrapped in a LiteRT tensor buffer.
struct HostBuffer {
    memory: *mut u8,
    layout: AllocLayout,
    len: usize,
    handle: ffi::TensorBuffer,
}

impl HostBuffer {
    fn new(
        api: &Api,
        tensor_type: &ffi::RankedTensorType,
        len: usize,
    ) -> Result<Self, InferenceError> {
        let layout = AllocLayout::from_size_align(len.max(1), ffi::HOST_MEMORY_ALIGNMENT)
            .map_err(|e| InferenceError::Unsupported(format!("buffer of {len} bytes: {e}")))?;
        // SAFETY: the layout has a non-zero size.
        let memory = unsafe { alloc::alloc_zeroed(layout) };
        if memory.is_null() {
            return Err(InferenceError::Runtime {
                call: "allocate tensor buffer",
                status: "out of memory",
            });
        }
        let mut handle = ptr::null_mut();
        // SAFETY: `memory` is aligned and `layout.size()` long; fogd frees it after
        // destroying the buffer (no deallocator is handed over).
        let status = unsafe {
            (api.create_tensor_buffer_from_host_memory)(
                tensor_type,
                memory.cast(),
                layout.size(),
                None,
                &mut handle,
            )
        };
        if let Err(error) = check("LiteRtCreateTensorBufferFromHostMemory", status) {
            // SAFETY: allocated above with this layout and not handed over.
            unsafe { alloc::dealloc(memory, layout) };
            return Err(error);
        }
        Ok(Self {
            memory,
            layout,
            len,
            handle,
        })
    }

    fn write(&self, api: &Api, bytes: &[u8]) -> Result<(), InferenceError> {
        let mut mapped: *mut c_void = ptr::null_mut();
        // SAFETY: the buffer is valid; lock maps it to host memory of at least `len` bytes.
        unsafe {
            check(
                "LiteRtLockTensorBuffer",
                (api.lock_tensor_buffer)(self.handle, &mut mapped, ffi::LOCK_WRITE),
            )?;
            ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                mapped.cast::<u8>(),
                bytes.len().min(self.len),
            );
            check(
                "LiteRtUnlockTensorBuffer",
                (api.unlock_tensor_buffer)(self.handle),
            )
        }
    }

    fn read(&self, api: &Api, out: &mut Vec<u8>) -> Result<(), InferenceError> {
        let mut mapped: *mut c_void = ptr::null_mut();
        // SAFETY: as in `write`.
        unsafe {
            check(
                "LiteRtLockTensorBuffer",
                (api.lock_tensor_buffer)(self.handle, &mut mapped, ffi::LOCK_READ),
            )?;
            out.extend_from_slice(std::slice::from_raw_parts(mapped.cast::<u8>(), self.len));
            check(
                "LiteRtUnlockTensorBuffer",
                (api.unlock_tensor_buffer)(self.handle),
            )
        }
    }

    fn destroy(self, api: &Api) {
        // SAFETY: the handle is destroyed before the memory it wraps is freed.
        unsafe {
            (api.destroy_tensor_buffer)(self.handle);
            alloc::dealloc(self.memory, self.layout);
        }
    }
}

/// One compiled model with its own input and output buffers: one caller at a time.
struct Invoker {
    compiled: ffi::CompiledModel,
    inputs: Vec<HostBuffer>,
    outputs: Vec<HostBuffer>,
    input_handles: Vec<ffi::TensorBuffer>,
    output_handles: Vec<ffi::TensorBuffer>,
    input_types: Vec<ffi::RankedTensorType>,
    output_types: Vec<ffi::RankedTensorType>,
}

// SAFETY: an invoker is used by one thread at a time (it is popped from the pool).
unsafe impl Send for Invoker {}

impl Invoker {
    fn new(runtime: &LiteRt, model: ffi::Model) -> Result<Self, InferenceError> {
        let api = &runtime.api;
        let mut options = ptr::null_mut();
        let mut compiled = ptr::null_mut();
        // SAFETY: out pointers are valid; options are destroyed on every path.
        unsafe {
            check("LiteRtCreateOptions", (api.create_options)(&mut options))?;
            let status = (api.set_options_hardware_accelerators)(options, ffi::ACCELERATOR_CPU);
            let status = if status == ffi::STATUS_OK {
                // LiteRT announces the XNNPACK delegate it creates here on stderr.
                crate::telemetry::stderr::captured(LIBRARY, || {
                    (api.create_compiled_model)(runtime.environment, model, options, &mut compiled)
                })
            } else {
                status
            };
            (api.destroy_options)(options);
            check("LiteRtCreateCompiledModel", status)?;
        }
        let mut invoker = Self {
            compiled,
            inputs: Vec::new(),
            outputs: Vec::new(),
            input_handles: Vec::new(),
            output_handles: Vec::new(),
            input_types: Vec::new(),
            output_types: Vec::new(),
        };
        if let Err(error) = invoker.allocate(api, model) {
            invoker.destroy(api);
            return Err(error);
        }
        Ok(invoker)
    }

    /// Tensor types take the element type from the model and the shape from the compiled
    /// model: a Keras model declares `[-1, N]`, which only compilation resolves.
    fn allocate(&mut self, api: &Api, model: ffi::Model) -> Result<(), InferenceError> {
        let mut signatures = 0;
        let mut signature = ptr::null_mut();
        let (mut input_count, mut output_count) = (0, 0);
        // SAFETY: valid model and out pointers.
        unsafe {
            check(
                "LiteRtGetNumModelSignatures",
                (api.get_num_model_signatures)(model, &mut signatures),
            )?;
            if signatures == 0 {
                return Err(InferenceError::Unsupported(
                    "the model has no signature".to_owned(),
                ));
            }
            check(
                "LiteRtGetModelSignature",
                (api.get_model_signature)(model, 0, &mut signature),
            )?;
            check(
                "LiteRtGetNumSignatureInputs",
                (api.get_num_signature_inputs)(signature, &mut input_count),
            )?;
            check(
                "LiteRtGetNumSignatureOutputs",
                (api.get_num_signature_outputs)(signature, &mut output_count),
            )?;
        }
        let mut output_layouts = vec![ffi::Layout::default(); output_count];
        // SAFETY: `output_layouts` has room for `output_count` layouts.
        check("LiteRtGetCompiledModelOutputTensorLayouts", unsafe {
            (api.get_compiled_model_output_tensor_layouts)(
                self.compiled,
                0,
                output_count,
                output_layouts.as_mut_ptr(),
                true,
            )
        })?;
        for index in 0..input_count {
            let mut layout = ffi::Layout::default();
            // SAFETY: `index` is below the input count.
            check("LiteRtGetCompiledModelInputTensorLayout", unsafe {
                (api.get_compiled_model_input_tensor_layout)(self.compiled, 0, index, &mut layout)
            })?;
            let ty = tensor_type(api, signature, index, true, layout)?;
            let len = self.buffer_len(api, index, true, &ty)?;
            let buffer = HostBuffer::new(api, &ty, len)?;
            self.input_handles.push(buffer.handle);
            self.inputs.push(buffer);
            self.input_types.push(ty);
        }
        for (index, layout) in output_layouts.into_iter().enumerate() {
            let ty = tensor_type(api, signature, index, false, layout)?;
            let len = self.buffer_len(api, index, false, &ty)?;
            let buffer = HostBuffer::new(api, &ty, len)?;
            self.output_handles.push(buffer.handle);
            self.outputs.push(buffer);
            self.output_types.push(ty);
        }
        Ok(())
    }

    /// The tensor's packed size, checked against what the compiled model requires.
    fn buffer_len(
        &self,
        api: &Api,
        index: usize,
        input: bool,
        ty: &ffi::RankedTensorType,
    ) -> Result<usize, InferenceError> {
        let element = ElementType::from_litert(ty.element_type).ok_or_else(|| {
            InferenceError::Unsupported(format!(
                "{} {index} has element type code {}; fogd supports int8, uint8 and float32",
                if input { "input" } else { "output" },
                ty.element_type
            ))
        })?;
        let mut elements = 1usize;
        for &d in ty.layout.dims() {
            let d = usize::try_from(d).map_err(|_| {
                InferenceError::Unsupported(format!("tensor {index} keeps a dynamic dimension"))
            })?;
            elements = elements.saturating_mul(d);
        }
        let packed = elements.saturating_mul(element.size());
        let mut requirements = ptr::null_mut();
        let mut required = 0usize;
        // SAFETY: valid compiled model and out pointers; requirements stay owned by it.
        unsafe {
            let status = if input {
                (api.get_compiled_model_input_buffer_requirements)(
                    self.compiled,
                    0,
                    index,
                    &mut requirements,
                )
            } else {
                (api.get_compiled_model_output_buffer_requirements)(
                    self.compiled,
                    0,
                    index,
                    &mut requirements,
                )
            };
            check("LiteRtGetCompiledModelBufferRequirements", status)?;
            check(
                "LiteRtGetTensorBufferRequirementsBufferSize",
                (api.get_buffer_requirements_size)(requirements, &mut required),
            )?;
        }
        if required > packed {
            return Err(InferenceError::Unsupported(format!(
                "tensor {index} needs a padded buffer ({required} bytes for {packed} packed)"
            )));
        }
        Ok(packed)
    }

    fn run(&mut self, api: &Api, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, InferenceError> {
        for (buffer, bytes) in self.inputs.iter().zip(inputs) {
            buffer.write(api, bytes)?;
        }
        // SAFETY: handle arrays match the model's input and output counts.
        check("LiteRtRunCompiledModel", unsafe {
            (api.run_compiled_model)(
                self.compiled,
                0,
                self.input_handles.len(),
                self.input_handles.as_mut_ptr(),
                self.output_handles.len(),
                self.output_handles.as_mut_ptr(),
            )
        })?;
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for buffer in &self.outputs {
            let mut bytes = Vec::with_capacity(buffer.len);
            buffer.read(api, &mut bytes)?;
            outputs.push(bytes);
        }
        Ok(outputs)
    }

    fn destroy(self, api: &Api) {
        for buffer in self.inputs.into_iter().chain(self.outputs) {
            buffer.destroy(api);
        }
        // SAFETY: its buffers are gone; nothing else refers to the compiled model.
        unsafe { (api.destroy_compiled_model)(self.compiled) }
    }
}

fn tensor_type(
    api: &Api,
    signature: ffi::Signature,
    index: usize,
    input: bool,
    layout: ffi::Layout,
) -> Result<ffi::RankedTensorType, InferenceError> {
    let mut tensor = ptr::null_mut();
    let mut ty = ffi::RankedTensorType::default();
    // SAFETY: `signature` is valid and `index` in range.
    unsafe {
        let status = if input {
            (api.get_signature_input_tensor_by_index)(signature, index, &mut tensor)
        } else {
            (api.get_signature_output_tensor_by_index)(signature, index, &mut tensor)
        };
        check("LiteRtGetSignatureTensorByIndex", status)?;
        check(
            "LiteRtGetRankedTensorType",
            (api.get_ranked_tensor_type)(tensor, &mut ty),
        )?;
    }
    ty.layout = layout;
    Ok(ty)
}
