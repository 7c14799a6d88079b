    /// {{description}}
    #[step]
{{signature}}
        let id = cx.context().id;
        Ok({{output_type}} { id })
    }
