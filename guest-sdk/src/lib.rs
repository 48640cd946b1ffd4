//! Write Sluice pipeline stages in Rust.
//!
//! A stage is a type that implements [`Stage`], exported with
//! [`export_stage!`], compiled to a WebAssembly component with
//! `cargo build --target wasm32-wasip2 --release` (or `sluice build`).
//! The host calls [`Stage::run`] once per request on a fresh instance, so a
//! stage keeps no state between requests.
//!
//! ```
//! use sluice_sdk::{config, export_stage, log, Message, Stage, StageError, Tensor};
//!
//! /// Multiplies every element of the `x` tensor by the configured `factor`.
//! struct Scale;
//!
//! impl Stage for Scale {
//!     fn run(mut input: Message) -> Result<Message, StageError> {
//!         let factor: f32 = config::parse("factor")?;
//!         let x = input.take_tensor("x")?;
//!         let shape = x.shape().to_vec();
//!         let mut values: Vec<f32> = x.into_vec()?;
//!         values.iter_mut().for_each(|v| *v *= factor);
//!         log::debug("scaled", &[("n", &values.len().to_string())]);
//!         Ok(Message::new().with_tensor("y", Tensor::new(shape, values)?))
//!     }
//! }
//!
//! export_stage!(Scale);
//! # fn main() {}
//! ```
//!
//! Which capabilities a stage gets is decided by what it imports: a stage
//! that calls nothing from [`inference`] or [`features`] is a
//! `preprocessor`; one that reads features is a `featurizer`; one that runs
//! models is a `predictor` (see `wit/worlds.wit`).
#![deny(missing_docs)]

mod error;
mod message;
mod tensor;

pub mod config;
pub mod features;
pub mod inference;
pub mod log;

pub use error::StageError;
pub use message::{Body, Message, Scalar};
pub use tensor::{Element, ElementType, Tensor, TensorData};

/// The raw bindings generated from the WIT contract. Stages rarely need them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        // Every capability a stage might use; a built component imports only
        // the interfaces it actually calls, which is what decides its world.
        inline: "
            package sluice:sdk;
            world guest {
                include sluice:pipeline/featurizer@0.1.0;
                include sluice:pipeline/predictor@0.1.0;
            }
        ",
        path: "../wit",
        world: "sluice:sdk/guest",
        pub_export_macro: true,
        export_macro_name: "__export_guest",
        default_bindings_module: "::sluice_sdk::bindings",
        generate_all,
        additional_derives: [PartialEq],
    });
}

/// A pipeline stage: one function from message to message.
pub trait Stage {
    /// Transform one request. Return [`StageError::invalid_input`] when the
    /// caller sent something wrong (HTTP 400) and [`StageError::internal`]
    /// for everything else (HTTP 500).
    fn run(input: Message) -> Result<Message, StageError>;
}

#[doc(hidden)]
pub mod __private {
    use crate::bindings::sluice::pipeline::types as wit;

    /// Glue between the generated export and a [`crate::Stage`].
    pub fn run<S: crate::Stage>(input: wit::Message) -> Result<wit::Message, wit::StageError> {
        S::run(input.into()).map(Into::into).map_err(Into::into)
    }
}

/// Export a [`Stage`] implementation as this component's `stage` interface.
///
/// Use it once per crate, at the top level: `export_stage!(MyStage);`.
#[macro_export]
macro_rules! export_stage {
    ($stage:ty) => {
        /// The stage's entry point (public so native builds, which carry no
        /// component exports, still count the stage as used).
        #[doc(hidden)]
        pub fn __sluice_run_stage(
            input: $crate::bindings::sluice::pipeline::types::Message,
        ) -> ::core::result::Result<
            $crate::bindings::sluice::pipeline::types::Message,
            $crate::bindings::sluice::pipeline::types::StageError,
        > {
            $crate::__private::run::<$stage>(input)
        }

        const _: () = {
            struct __SluiceStage;
            impl $crate::bindings::exports::sluice::pipeline::stage::Guest for __SluiceStage {
                fn run(
                    input: $crate::bindings::sluice::pipeline::types::Message,
                ) -> ::core::result::Result<
                    $crate::bindings::sluice::pipeline::types::Message,
                    $crate::bindings::sluice::pipeline::types::StageError,
                > {
                    __sluice_run_stage(input)
                }
            }
            // The export symbols (`sluice:pipeline/stage@0.1.0#run`) exist
            // only in components; native builds (unit tests) skip them.
            #[cfg(target_family = "wasm")]
    $crate::bindings::__export_guest!(__SluiceStage with_types_in $crate::bindings);
        };
    };
}
