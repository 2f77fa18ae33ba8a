-- Settings an admin changed in App Home; they override the deployment's environment.
CREATE TABLE admin_settings (
    name        text        PRIMARY KEY,
    value       jsonb       NOT NULL,
    updated_by  text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
