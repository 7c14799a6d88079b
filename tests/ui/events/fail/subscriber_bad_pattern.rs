use tasker::prelude::*;

#[subscriber(events = ["failed", "task.*.x*"])]
async fn alerts(_event: &Event) -> Result<(), SubscriberError> {
    Ok(())
}

fn main() {}
