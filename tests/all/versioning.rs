//! Contract versioning: wasmtime matches a WIT version on its leftmost
//! non-zero part, so a plugin built against `rampart:plugin@0.1.0` must run
//! on a host that offers `0.1.1` with an additive function. The host here is
//! a hand-built linker that offers `rampart:plugin/kv@0.1.1` (the real kv
//! functions plus a new `usage`) — what a future runtime would look like.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, ComponentType, Lift, Linker, Lower, ResourceTable, Val};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use rampart_e2e::plugins_dir;

#[derive(ComponentType, Lift, Lower, Debug, Clone)]
#[component(variant)]
enum KvError {
    #[component(name = "quota-exceeded")]
    QuotaExceeded(u64),
    #[component(name = "too-large")]
    TooLarge(u64),
    #[component(name = "store")]
    Store(String),
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    kv: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

type KvResult<T> = wasmtime::Result<(Result<T, KvError>,)>;

fn future_host_linker(engine: &Engine) -> Linker<State> {
    let mut linker: Linker<State> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    linker
        .instance("rampart:plugin/types@0.1.1")
        .expect("types");
    let mut kv = linker.instance("rampart:plugin/kv@0.1.1").expect("kv");
    kv.func_wrap(
        "get",
        |store, (key,): (String,)| -> KvResult<Option<Vec<u8>>> {
            let state: &State = store.data();
            Ok((Ok(state.kv.lock().expect("lock").get(&key).cloned()),))
        },
    )
    .expect("get");
    kv.func_wrap(
        "set",
        |store, (key, value): (String, Vec<u8>)| -> KvResult<()> {
            let state: &State = store.data();
            state.kv.lock().expect("lock").insert(key, value);
            Ok((Ok(()),))
        },
    )
    .expect("set");
    kv.func_wrap("delete", |store, (key,): (String,)| -> KvResult<bool> {
        let state: &State = store.data();
        Ok((Ok(state.kv.lock().expect("lock").remove(&key).is_some()),))
    })
    .expect("delete");
    kv.func_wrap(
        "list-keys",
        |store, (prefix, _after, limit): (String, Option<String>, u32)| -> KvResult<Vec<String>> {
            let state: &State = store.data();
            let keys = state
                .kv
                .lock()
                .expect("lock")
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .take(limit as usize)
                .cloned()
                .collect();
            Ok((Ok(keys),))
        },
    )
    .expect("list-keys");
    kv.func_wrap(
        "compare-and-swap",
        |store,
         (key, expected, new): (String, Option<Vec<u8>>, Option<Vec<u8>>)|
         -> KvResult<bool> {
            let state: &State = store.data();
            let mut map = state.kv.lock().expect("lock");
            if map.get(&key) != expected.as_ref() {
                return Ok((Ok(false),));
            }
            match new {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
            Ok((Ok(true),))
        },
    )
    .expect("cas");
    // The additive part of 0.1.1: a function 0.1.0 plugins never import.
    kv.func_wrap("usage", |store, (): ()| -> wasmtime::Result<(u64,)> {
        let state: &State = store.data();
        Ok((state
            .kv
            .lock()
            .expect("lock")
            .values()
            .map(|v| v.len() as u64)
            .sum(),))
    })
    .expect("usage");
    linker
}

#[tokio::test]
async fn plugin_built_against_0_1_0_runs_on_a_0_1_1_host() {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).expect("engine");
    let component =
        Component::from_file(&engine, plugins_dir().join("edl-blocklist.wasm")).expect("component");
    let imports: Vec<String> = component
        .component_type()
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(
        imports.iter().any(|name| name == "rampart:plugin/kv@0.1.0"),
        "{imports:?}"
    );

    let linker = future_host_linker(&engine);
    let kv = Arc::new(Mutex::new(BTreeMap::new()));
    let mut store = Store::new(
        &engine,
        State {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            kv: kv.clone(),
        },
    );
    let instance = linker
        .instantiate_async(&mut store, &component)
        .await
        .expect("0.1.0 plugin links against the 0.1.1 host");

    let interface = component
        .get_export_index(None, "rampart:plugin/respond@0.1.0")
        .expect("respond export");
    let respond_index = component
        .get_export_index(Some(&interface), "respond")
        .expect("respond func");
    let respond = instance.get_func(&mut store, respond_index).expect("func");
    let request = Val::Record(vec![
        ("run-id".into(), Val::String("run-1".into())),
        ("step-id".into(), Val::String("block".into())),
        ("idempotency-key".into(), Val::String("run-1/block".into())),
        (
            "target".into(),
            Val::Record(vec![
                ("kind".into(), Val::Enum("ip".into())),
                ("value".into(), Val::String("198.51.100.23".into())),
            ]),
        ),
        ("params".into(), Val::String("{\"list\":\"block\"}".into())),
    ]);
    let mut results = [Val::Bool(false)];
    respond
        .call_async(&mut store, &[request, Val::Bool(false)], &mut results)
        .await
        .expect("call");
    let Val::Result(Ok(Some(result))) = &results[0] else {
        panic!("respond failed: {:?}", results[0])
    };
    let Val::Record(fields) = result.as_ref() else {
        panic!("{result:?}")
    };
    assert_eq!(
        fields[0],
        ("outcome".to_owned(), Val::Enum("executed".into()))
    );
    assert!(
        kv.lock()
            .expect("lock")
            .contains_key("edl/block/198.51.100.23"),
        "the plugin wrote through kv@0.1.1"
    );
}
