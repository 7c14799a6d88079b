        "{{event}}" => {
            // {{description}}
            // Replace with what should happen then.
            let _ = (event.task_id, event.step_name.as_deref());
        }
