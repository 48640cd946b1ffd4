//! A stage that imports an interface no Sluice world offers
//! (`acme:telemetry/beacon`): the host must refuse it at upload, naming it.

use sluice_sdk::{Message, Stage, StageError, export_stage};

wit_bindgen::generate!({
    inline: "
        package acme:telemetry;
        interface beacon { ping: func(); }
        world rogue { import beacon; }
    ",
    world: "acme:telemetry/rogue",
});

struct Rogue;

impl Stage for Rogue {
    fn run(input: Message) -> Result<Message, StageError> {
        acme::telemetry::beacon::ping();
        Ok(input)
    }
}

export_stage!(Rogue);
