//! What a component may weigh before anyone compiles it.
//!
//! Compiling is the one thing a plugin upload makes the host do that no
//! fuel or deadline can stop: cranelift's time and memory grow with the
//! number of functions and with the size of the largest one (300k tiny
//! functions: 51 s and 1.8 GB; one 150k-branch function: 31 s and 1.2 GB).
//! So the file is read once with `wasmparser` (a linear scan that allocates
//! nothing per function) and refused, with what was found and the bound,
//! when it is past [`CompileBounds`].

use wasmparser::{Parser, Payload};

pub use crate::engine::CompileBounds;

/// Why a component was refused before compiling.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BoundsError {
    /// The file is too large.
    #[error("component is {size} bytes, more than the {max} this runtime compiles")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// Too many functions.
    #[error(
        "component has more than {max} functions with a body; this runtime compiles at most {max}"
    )]
    TooManyFunctions {
        /// The bound.
        max: usize,
    },
    /// One function is too large.
    #[error(
        "function {index} of core module {module} has a {size}-byte body, more than the {max} this runtime compiles"
    )]
    FunctionTooLarge {
        /// The core module (in the order they appear).
        module: usize,
        /// The function (in that module's code section).
        index: usize,
        /// Its size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// Too many core modules.
    #[error("component has more than {max} core modules")]
    TooManyModules {
        /// The bound.
        max: usize,
    },
    /// The binary does not parse.
    #[error("component does not parse: {0}")]
    Malformed(#[from] wasmparser::BinaryReaderError),
}

/// Checks `wasm` against `bounds` without compiling it.
pub fn check(wasm: &[u8], bounds: &CompileBounds) -> Result<(), BoundsError> {
    if wasm.len() > bounds.max_component_bytes {
        return Err(BoundsError::TooLarge {
            size: wasm.len(),
            max: bounds.max_component_bytes,
        });
    }
    let mut functions = 0usize;
    let mut modules = 0usize;
    let mut in_module = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::ModuleSection { .. } => {
                modules += 1;
                if modules > bounds.max_modules {
                    return Err(BoundsError::TooManyModules {
                        max: bounds.max_modules,
                    });
                }
            }
            Payload::CodeSectionStart { .. } => in_module = 0,
            Payload::CodeSectionEntry(body) => {
                functions += 1;
                if functions > bounds.max_functions {
                    return Err(BoundsError::TooManyFunctions {
                        max: bounds.max_functions,
                    });
                }
                let size = body.range().len();
                if size > bounds.max_function_bytes {
                    return Err(BoundsError::FunctionTooLarge {
                        module: modules.saturating_sub(1),
                        index: in_module,
                        size,
                        max: bounds.max_function_bytes,
                    });
                }
                in_module += 1;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_with(functions: usize, body_instructions: usize) -> Vec<u8> {
        let body = "i32.const 1 drop ".repeat(body_instructions);
        let funcs: String = (0..functions)
            .map(|i| format!("(func $f{i} {body})"))
            .collect();
        let text = format!("(component (core module {funcs}))");
        wat::parse_str(text).unwrap_or_else(|err| panic!("wat: {err}"))
    }

    #[test]
    fn counts_functions_and_body_sizes_of_nested_modules() {
        let small = component_with(10, 4);
        assert!(check(&small, &CompileBounds::default()).is_ok());
        let bounds = CompileBounds {
            max_functions: 9,
            ..CompileBounds::default()
        };
        assert!(matches!(
            check(&small, &bounds),
            Err(BoundsError::TooManyFunctions { max: 9 })
        ));
        let big_body = component_with(2, 2_000);
        let bounds = CompileBounds {
            max_function_bytes: 1_000,
            ..CompileBounds::default()
        };
        assert!(matches!(
            check(&big_body, &bounds),
            Err(BoundsError::FunctionTooLarge {
                module: 0,
                index: 0,
                max: 1_000,
                ..
            })
        ));
        let bounds = CompileBounds {
            max_component_bytes: 100,
            ..CompileBounds::default()
        };
        assert!(matches!(
            check(&big_body, &bounds),
            Err(BoundsError::TooLarge { max: 100, .. })
        ));
        assert!(matches!(
            check(&small[..small.len() - 3], &CompileBounds::default()),
            Err(BoundsError::Malformed(_))
        ));
    }
}
