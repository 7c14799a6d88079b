use tasker::prelude::*;

#[subscriber]
async fn alerts(_event: &Event) -> Result<(), SubscriberError> {
    Ok(())
}

fn main() {}
