tasker::custom_event! {
    /// Event names are ASCII letters, digits, `_`, `-` and `.`.
    pub SHIPPED = "order.ship ped";
}

fn main() {}
