tasker::custom_event! {
    /// Looks like one of the engine's own events.
    pub MINE = "step.exploded";
}

fn main() {}
