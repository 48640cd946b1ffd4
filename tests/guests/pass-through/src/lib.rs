//! A stage that answers its input unchanged: the cost of a pipeline hop
//! with no work in it (`host/benches/pipelines.rs`).

use sluice_sdk::{Message, Stage, StageError, export_stage};

struct PassThrough;

impl Stage for PassThrough {
    fn run(input: Message) -> Result<Message, StageError> {
        Ok(input)
    }
}

export_stage!(PassThrough);
