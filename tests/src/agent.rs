//! An agent in the test process, started from TOML text, and helpers to write that text.

use fogd::agent::Agent;
use fogd::config;

use crate::wait_until;

pub struct Running {
    pub agent: Agent,
    config: config::Config,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Reconfigures the agent in place with the config it already runs: triggers follow it,
    /// so what they gathered (open flow windows, partial batches) is sent now.
    pub async fn reapply(&mut self) {
        let config = self.config.clone();
        self.agent.reconfigure(&config).await.unwrap();
    }
}

/// Starts an agent in this process from TOML text (paths relative to a temp dir), with its
/// own state, its configured models and no metrics listener, so agents in one test process
/// do not collide.
pub async fn start(text: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        state_dir = "state"
        [metrics]
        {text}
    "#
    );
    let config = config::parse_str(&text, "fogd.toml".as_ref(), dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    let models = std::sync::Arc::new(fogd::inference::ModelRegistry::for_config(&config));
    let agent = Agent::start(config.clone(), models).await.unwrap();
    Running {
        agent,
        config,
        _dir: dir,
    }
}

/// `[inference]` on the fetched LiteRT runtime and the shipped model `name` (version 1, with
/// its reference vectors), from `models/<name>/`.
pub fn shipped_model(name: &str) -> String {
    let dir = crate::root().join("models").join(name);
    format!(
        r#"
            [inference]
            runtime = "{runtime}"

            [[model]]
            name = "{name}"
            version = "1"
            path = "{dir}/{name}.tflite"
            reference = "{dir}/reference.json"
        "#,
        runtime = crate::litert_library().display(),
        dir = dir.display(),
    )
}

pub fn broker(name: &str, address: &str, extra: &str) -> String {
    format!(
        r#"
            [[broker]]
            name = "{name}"
            address = "{address}"
            client_id = "fogd-test-{name}-{}"
            reconnect_max = "500ms"
            {extra}
        "#,
        fogd::event::now_micros()
    )
}

pub fn function(name: &str, component: &std::path::Path, body: &str) -> String {
    format!(
        r#"
            [[function]]
            name = "{name}"
            component = "{}"
            {body}
        "#,
        component.display()
    )
}

pub async fn connected(agent: &Agent, broker: &str) {
    let key = format!("broker/{broker}");
    wait_until(&format!("{key} is connected and subscribed"), || {
        agent
            .health
            .report()
            .components
            .get(&key)
            .is_some_and(|c| c.ok)
    })
    .await;
}
