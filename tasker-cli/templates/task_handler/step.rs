    /// {{description}}
    #[step(depends_on = {{depends_on}})]
{{signature}}
        let id = {{first_parent}}.id;
        Ok({{output_type}} { id })
    }
