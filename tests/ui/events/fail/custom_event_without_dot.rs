tasker::custom_event! {
    /// Shipped.
    pub SHIPPED = "shipped";
}

fn main() {}
