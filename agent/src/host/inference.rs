//! `fogd:function/inference`: granted models only, inputs checked against the signature
//! before they reach the runtime, every failure an error value to the guest.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, GrantError, HostResources, HostState};
use crate::config::FunctionSpec;
use crate::contract::inference::{
    self, ElementType as WitElement, Error, Host, ModelSignature, Quantization as WitQuantization,
    Tensor, TensorInfo,
};
use crate::inference::{ElementType, InferenceError, ModelRegistry, ModelVersion, TensorSpec};

/// The models one function may run, resolved when it is loaded.
pub struct ModelAccess {
    registry: Arc<ModelRegistry>,
    granted: Vec<String>,
}

impl Capability for ModelAccess {
    /// A granted model that is loaded must have the shapes the function declares. One that
    /// is not loaded (or no runtime) is left to fail each call with the reason.
    fn prepare(spec: &FunctionSpec, resources: &HostResources) -> Result<Self, GrantError> {
        let registry = resources.models;
        for (model, shapes) in &spec.model_shapes {
            if registry.active(model).is_ok() {
                registry.check_shapes(model, &shapes.inputs, &shapes.outputs)?;
            }
        }
        Ok(Self {
            registry: registry.clone(),
            granted: spec.grants.models.clone(),
        })
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        inference::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
    }
}

impl ModelAccess {
    fn active(&self, model: &str) -> Result<Arc<ModelVersion>, Error> {
        if !self.granted.iter().any(|m| m == model) {
            return Err(Error::NotGranted(format!(
                "model {model:?} is not in this function's grants.models"
            )));
        }
        self.registry.active(model).map_err(to_wit_error)
    }

    fn run(&self, model: &str, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, Error> {
        self.registry.run(model, inputs).map_err(to_wit_error)
    }
}

fn to_wit_error(error: InferenceError) -> Error {
    match error {
        InferenceError::Unavailable(reason) => Error::Unavailable(reason),
        InferenceError::UnknownModel(name) => {
            Error::UnknownModel(format!("no model named {name:?} is loaded"))
        }
        InferenceError::InvalidInput(reason) => Error::InvalidInput(reason),
        other => Error::Failed(other.to_string()),
    }
}

fn element_to_wit(element: ElementType) -> WitElement {
    match element {
        ElementType::Int8 => WitElement::Int8,
        ElementType::Uint8 => WitElement::Uint8,
        ElementType::Float32 => WitElement::Float32,
    }
}

fn info(spec: &TensorSpec) -> TensorInfo {
    TensorInfo {
        name: spec.name.clone(),
        shape: spec.shape.clone(),
        element_type: element_to_wit(spec.element),
        quantization: spec.quantization.map(|q| WitQuantization {
            scale: q.scale,
            zero_point: q.zero_point,
        }),
    }
}

/// Checks guest tensors against the signature so the runtime only sees well-formed input.
fn check_inputs(specs: &[TensorSpec], inputs: &[Tensor]) -> Result<(), Error> {
    if inputs.len() != specs.len() {
        return Err(Error::InvalidInput(format!(
            "the model takes {} input tensor(s), got {}",
            specs.len(),
            inputs.len()
        )));
    }
    for (index, (spec, tensor)) in specs.iter().zip(inputs).enumerate() {
        if tensor.element_type != element_to_wit(spec.element) || tensor.shape != spec.shape {
            return Err(Error::InvalidInput(format!(
                "input {index} ({:?}) must be {} {:?}, got {:?} {:?}",
                spec.name,
                spec.element.as_str(),
                spec.shape,
                tensor.element_type,
                tensor.shape
            )));
        }
        if tensor.data.len() != spec.byte_len() {
            return Err(Error::InvalidInput(format!(
                "input {index} ({:?}) needs {} bytes of data, got {}",
                spec.name,
                spec.byte_len(),
                tensor.data.len()
            )));
        }
    }
    Ok(())
}

impl Host for HostState {
    fn models(&mut self) -> Vec<String> {
        self.caps.grants.inference.granted.clone()
    }

    fn signature(&mut self, model: String) -> Result<ModelSignature, Error> {
        let active = self.caps.grants.inference.active(&model)?;
        Ok(ModelSignature {
            model,
            version: active.version.clone(),
            inputs: active.inputs().iter().map(info).collect(),
            outputs: active.outputs().iter().map(info).collect(),
        })
    }

    fn run(&mut self, model: String, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Error> {
        let active = self.caps.grants.inference.active(&model)?;
        check_inputs(active.inputs(), &inputs)?;
        let data: Vec<&[u8]> = inputs.iter().map(|t| t.data.as_slice()).collect();
        let outputs = self.caps.grants.inference.run(&model, &data)?;
        Ok(active
            .outputs()
            .iter()
            .zip(outputs)
            .map(|(spec, data)| Tensor {
                element_type: element_to_wit(spec.element),
                shape: spec.shape.clone(),
                data,
            })
            .collect())
    }

    fn run_f32(&mut self, model: String, inputs: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>, Error> {
        let active = self.caps.grants.inference.active(&model)?;
        if inputs.len() != active.inputs().len() {
            return Err(Error::InvalidInput(format!(
                "the model takes {} input tensor(s), got {}",
                active.inputs().len(),
                inputs.len()
            )));
        }
        let encoded = active
            .inputs()
            .iter()
            .zip(&inputs)
            .map(|(spec, values)| spec.encode_f32(values))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::InvalidInput)?;
        let data: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let outputs = self.caps.grants.inference.run(&model, &data)?;
        active
            .outputs()
            .iter()
            .zip(outputs)
            .map(|(spec, bytes)| spec.decode_f32(&bytes).map_err(Error::Failed))
            .collect()
    }
}
