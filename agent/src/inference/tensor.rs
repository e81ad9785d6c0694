//! Tensor descriptions and the affine (de)quantization int8 models use.

use serde::Serialize;

/// Element types a fogd model's inputs and outputs may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    Int8,
    Uint8,
    Float32,
}

impl ElementType {
    /// From LiteRT's `LiteRtElementType` (TfLiteType) code.
    pub fn from_litert(code: i32) -> Option<Self> {
        match code {
            9 => Some(Self::Int8),
            3 => Some(Self::Uint8),
            1 => Some(Self::Float32),
            _ => None,
        }
    }

    pub fn size(self) -> usize {
        match self {
            Self::Int8 | Self::Uint8 => 1,
            Self::Float32 => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::Uint8 => "uint8",
            Self::Float32 => "float32",
        }
    }
}

/// `real = scale * (quantized - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantization {
    pub scale: f32,
    pub zero_point: i32,
}

impl Quantization {
    /// Rounds half to even, as TensorFlow's converter and NumPy do, so a float input
    /// quantized here matches the reference vectors bit for bit.
    pub fn quantize(self, value: f32, element: ElementType) -> u8 {
        let q = (value / self.scale).round_ties_even() + self.zero_point as f32;
        match element {
            ElementType::Uint8 => q.clamp(0.0, 255.0) as u8,
            _ => (q.clamp(-128.0, 127.0) as i8) as u8,
        }
    }

    pub fn dequantize(self, byte: u8, element: ElementType) -> f32 {
        let q = match element {
            ElementType::Uint8 => i32::from(byte),
            _ => i32::from(byte as i8),
        };
        self.scale * (q - self.zero_point) as f32
    }
}

/// One input or output of a model's signature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<u32>,
    pub element: ElementType,
    pub quantization: Option<Quantization>,
}

impl TensorSpec {
    pub fn elements(&self) -> usize {
        self.shape.iter().map(|&d| d as usize).product()
    }

    pub fn byte_len(&self) -> usize {
        self.elements() * self.element.size()
    }

    /// Whether `other` can replace this tensor: same shape and type (names may differ).
    pub fn compatible_with(&self, other: &TensorSpec) -> bool {
        self.shape == other.shape && self.element == other.element
    }

    /// Float values -> this tensor's bytes, quantizing if its type is an integer type.
    pub fn encode_f32(&self, values: &[f32]) -> Result<Vec<u8>, String> {
        if values.len() != self.elements() {
            return Err(format!(
                "input {:?} takes {} values (shape {:?}), got {}",
                self.name,
                self.elements(),
                self.shape,
                values.len()
            ));
        }
        match (self.element, self.quantization) {
            (ElementType::Float32, _) => Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            (element, Some(q)) => Ok(values.iter().map(|&v| q.quantize(v, element)).collect()),
            (element, None) => Err(format!(
                "input {:?} is {} without quantization parameters",
                self.name,
                element.as_str()
            )),
        }
    }

    /// This tensor's bytes -> float values, dequantizing integer types.
    pub fn decode_f32(&self, bytes: &[u8]) -> Result<Vec<f32>, String> {
        match (self.element, self.quantization) {
            (ElementType::Float32, _) => Ok(bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()),
            (element, Some(q)) => Ok(bytes.iter().map(|&b| q.dequantize(b, element)).collect()),
            (element, None) => Err(format!(
                "output {:?} is {} without quantization parameters",
                self.name,
                element.as_str()
            )),
        }
    }
}

/// Index of the largest value (first on ties); `None` for an empty slice.
pub fn argmax(values: &[f32]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, &v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quantization = Quantization {
        scale: 0.5,
        zero_point: -128,
    };

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        assert_eq!(Q.quantize(0.25, ElementType::Int8) as i8, -128);
        assert_eq!(Q.quantize(0.75, ElementType::Int8) as i8, -126);
        assert_eq!(Q.quantize(1000.0, ElementType::Int8) as i8, 127);
        assert_eq!(Q.quantize(-5.0, ElementType::Int8) as i8, -128);
    }

    #[test]
    fn dequantize_inverts_quantize_on_the_grid() {
        for value in [0.0, 0.5, 10.0, 127.5] {
            let byte = Q.quantize(value, ElementType::Int8);
            assert_eq!(Q.dequantize(byte, ElementType::Int8), value);
        }
        let u = Quantization {
            scale: 1.0,
            zero_point: 0,
        };
        assert_eq!(u.quantize(200.0, ElementType::Uint8), 200);
        assert_eq!(u.dequantize(200, ElementType::Uint8), 200.0);
    }

    #[test]
    fn encode_checks_the_element_count() {
        let spec = TensorSpec {
            name: "x".into(),
            shape: vec![1, 3],
            element: ElementType::Int8,
            quantization: Some(Q),
        };
        assert_eq!(spec.encode_f32(&[0.0, 0.5, 1.0]).unwrap().len(), 3);
        let error = spec.encode_f32(&[0.0]).unwrap_err();
        assert!(error.contains("takes 3 values"), "{error}");
    }

    #[test]
    fn float_tensors_round_trip_bytes() {
        let spec = TensorSpec {
            name: "y".into(),
            shape: vec![2],
            element: ElementType::Float32,
            quantization: None,
        };
        let bytes = spec.encode_f32(&[1.5, -2.0]).unwrap();
        assert_eq!(spec.decode_f32(&bytes).unwrap(), vec![1.5, -2.0]);
    }

    #[test]
    fn argmax_picks_the_first_largest() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7, 0.2]), Some(1));
        assert_eq!(argmax(&[]), None);
    }
}
