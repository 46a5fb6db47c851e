/**
 * The daemon's frame: containerd's `server.New` and `app.Action`, in that order.
 *
 * {@link Server.start} validates and creates root and state, cleans `<root>/tmpmounts`, loads
 * plugin_dir modules, initialises plugins in dependency order, mounts every service a plugin
 * hands over on one router (and its ttrpc services on one ttrpc server), and opens the
 * listeners (ttrpc unix socket, gRPC unix socket, optional TCP, debug, metrics).
 * {@link Server.stop} undoes it in reverse: stop accepting, let in-flight RPCs finish
 * (bounded), close listeners, close plugins in reverse order, remove the sockets.
 * {@link runDaemon} wraps both with signal handling, readiness notification and exit codes.
 *
 * The server knows no plugin by name: it only asks each instance whether it serves RPCs.
 *
 * @module
 */
import type { Config } from "./config.ts";
import { decodePluginConfigs } from "./config.ts";
import { Exchange } from "./exchange.ts";
import { H2Server } from "./h2_server.ts";
import { createLogger, isLogLevel, type Logger } from "./log.ts";
import { cleanupTempMounts } from "./mount.ts";
import {
  closePlugins,
  initPlugins,
  missingRequired,
  type PluginSet,
  type Registration,
  Registry,
} from "./plugin.ts";
import {
  createRpcHandler,
  GRPC_H2_OPTIONS,
  type RpcHandler,
  servesRpc,
  type ServiceSpec,
  type TtrpcServiceSpec,
} from "./rpc.ts";
import { contextInterceptor, errorInterceptor, grpcMessageOf } from "./interceptors.ts";
import { ErrdefsError, fromCode } from "./errdefs.ts";
import { type TtrpcCallContext, TtrpcServer, type TtrpcServiceImpl } from "./ttrpc.ts";
import type { DescService } from "@bufbuild/protobuf";
import { createHeapTrimmer } from "./heap_trim.ts";
import { closeServer, listenTcp, listenUnix, stopAccepting } from "./listen.ts";
import type { Metrics } from "./metrics.ts";
import { debugVars, diagnosticDump, startDebugServer } from "./debug.ts";
import { installSignals } from "./signals.ts";
import { holdInspectorPort } from "./inspector_guard.ts";
import { notify } from "./notify.ts";
import { VERSION } from "./version.ts";

/** How long a graceful stop waits for in-flight RPCs before cutting them off. */
const DRAIN_TIMEOUT_MS = 10_000;

/** A boot failure the user can act on (bad root, missing required plugin, socket in use). */
export class BootError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BootError";
  }
}

/** Inputs of Server.start. */
export interface ServerOptions {
  config: Config;
  /** Registrations to load (plugin_dir modules are added to these). */
  registrations: readonly Registration[];
  /** Decoded plugin config sections by URI. */
  pluginConfigs: ReadonlyMap<string, unknown>;
  log: Logger;
}

type Closer = { close(): Promise<void> };

/** A running daemon. */
export class Server {
  readonly config: Config;
  readonly plugins: PluginSet;
  readonly events: Exchange;
  /** Date.now() when boot began. */
  readonly started: number;
  readonly #log: Logger;
  readonly #rpc: RpcHandler;
  readonly #stopping: AbortController;
  readonly #grpcServers: H2Server[];
  readonly #ttrpc: TtrpcServer;
  readonly #closers: Closer[];

  private constructor(init: {
    config: Config;
    plugins: PluginSet;
    events: Exchange;
    started: number;
    log: Logger;
    rpc: RpcHandler;
    stopping: AbortController;
    grpcServers: H2Server[];
    ttrpc: TtrpcServer;
    closers: Closer[];
  }) {
    this.config = init.config;
    this.plugins = init.plugins;
    this.events = init.events;
    this.started = init.started;
    this.#log = init.log;
    this.#rpc = init.rpc;
    this.#stopping = init.stopping;
    this.#grpcServers = init.grpcServers;
    this.#ttrpc = init.ttrpc;
    this.#closers = init.closers;
  }

  /** RPCs running now. */
  get inFlight(): number {
    return this.#rpc.inFlight;
  }

  /** Boot: everything up to serving. Throws BootError for user-fixable failures. */
  static async start(options: ServerOptions): Promise<Server> {
    const started = Date.now();
    const { config, log } = options;
    await prepareDirs(config);
    for (const warning of await cleanupTempMounts(`${config.root}/tmpmounts`)) log.warn(warning);

    const registry = new Registry();
    for (const reg of options.registrations) registry.register(reg);
    const pluginConfigs = new Map(options.pluginConfigs);
    for (const reg of await loadPluginDir(config.plugin_dir)) {
      registry.register(reg);
      const decoded = decodePluginConfigs(config, [reg], { unknownSections: "ignore" });
      for (const warning of decoded.warnings) log.warn(warning);
      for (const [uri, value] of decoded.configs) pluginConfigs.set(uri, value);
    }
    const disabled = new Set(config.disabled_plugins);
    let ordered: Registration[];
    try {
      ordered = registry.graph((uri) => disabled.has(uri));
    } catch (err) {
      throw new BootError((err as Error).message);
    }

    const events = new Exchange();
    const stopping = new AbortController();
    // One trimmer for the whole daemon: RPC calls and plugins' bulk data feed it (heap_trim.ts).
    // 8 MiB of content, or 512 calls: ten `ctr run --rm` (~600 RPCs) left RSS 24 MiB above
    // idle, 5 MiB after a trim (GC + malloc_trim, 32 ms). Content trims after 2 s of quiet,
    // calls after 10 s: a trim costs the next calls their optimized code (heap_trim.ts).
    const heapTrimmer = createHeapTrimmer({ log, minBytes: 8 << 20 });
    stopping.signal.addEventListener("abort", () => heapTrimmer.close(), { once: true });
    const grpcAddress = config.grpc.address;
    // containerd: an unset [ttrpc] address means `<grpc address>.ttrpc` with the gRPC owner.
    const ttrpcListen = config.ttrpc.address
      ? { path: config.ttrpc.address, uid: config.ttrpc.uid, gid: config.ttrpc.gid }
      : { path: `${grpcAddress}.ttrpc`, uid: config.grpc.uid, gid: config.grpc.gid };
    const plugins = await initPlugins({
      ordered,
      configs: pluginConfigs,
      properties: {
        rootDir: config.root,
        stateDir: config.state,
        grpcAddress,
        ttrpcAddress: ttrpcListen.path,
      },
      events,
      log,
      signal: stopping.signal,
      heapTrimmer,
      onStart: (uri) =>
        log.info(`loading plugin "${uri}"...`, { type: uri.slice(0, uri.lastIndexOf(".")) }),
      onResult: (record) => {
        if (record.status === "skip") {
          log.info("skip loading plugin", { id: record.uri, error: record.error });
        } else if (record.status === "error") {
          log.warn("failed to load plugin", { id: record.uri, error: record.error });
        }
      },
    });
    const missing = missingRequired(plugins, config.required_plugins);
    if (missing.length > 0) {
      stopping.abort();
      await closePlugins(
        plugins,
        (uri, err) => log.warn("failed to close plugin", { id: uri, error: err }),
      );
      throw new BootError(`required plugins did not load: ${missing.join("; ")}`);
    }

    const services: ServiceSpec[] = [];
    const ttrpcServices: TtrpcServiceSpec[] = [];
    for (const record of plugins.records()) {
      const instance = record.instance;
      if (record.status !== "ok" || !servesRpc(instance)) continue;
      services.push(...instance.services);
      ttrpcServices.push(...(instance.ttrpc ?? []));
    }
    let ttrpc: TtrpcServer;
    try {
      ttrpc = createTtrpcServer(ttrpcServices, log);
    } catch (err) {
      stopping.abort();
      await closePlugins(plugins, () => {});
      throw err;
    }
    // Metrics (and prom-client, ~24 ms of module loading) only when they are served: without
    // a [metrics] address nobody could read the counters.
    let metrics: Metrics | undefined;
    if (config.metrics.address) {
      const { createMetrics, isMetricsContributor } = await import("./metrics.ts");
      metrics = createMetrics({ histogram: config.metrics.grpc_histogram });
      for (const spec of services) metrics.register(spec.service);
      // Plugins with metrics of their own (e.g. the task monitor) add them to this registry.
      for (const record of plugins.records()) {
        if (record.status !== "ok" || !isMetricsContributor(record.instance)) continue;
        try {
          await record.instance.registerMetrics(metrics.registry);
        } catch (err) {
          log.warn("failed to register plugin metrics", { id: record.uri, error: err });
        }
      }
    }
    const rpc = createRpcHandler({
      services,
      interceptors: [
        ...(metrics ? [metrics.interceptor] : []),
        contextInterceptor(),
        errorInterceptor(log),
      ],
      maxRecvMessageBytes: config.grpc.max_recv_message_size,
      maxSendMessageBytes: config.grpc.max_send_message_size,
      log,
      heapTrimmer,
    });

    const closers: Closer[] = [];
    const grpcServers: H2Server[] = [];
    let ttrpcListening = false;
    const cleanup = async () => {
      for (const closer of closers.reverse()) await closer.close().catch(() => {});
      stopping.abort();
      await closePlugins(plugins, () => {});
    };
    try {
      // containerd's order: the ttrpc socket before the gRPC one, so a client that reaches
      // the gRPC socket finds shims able to deliver their events.
      await listenUnix(ttrpc, ttrpcListen);
      ttrpcListening = true;
      log.info("serving...", { address: ttrpcListen.path });
      const unixServer = new H2Server(GRPC_H2_OPTIONS);
      rpc.attach(unixServer);
      await listenUnix(unixServer, {
        path: grpcAddress,
        uid: config.grpc.uid,
        gid: config.grpc.gid,
      });
      grpcServers.push(unixServer);
      log.info("serving...", { address: grpcAddress });
      if (config.grpc.tcp_address) {
        const tcpServer = new H2Server(GRPC_H2_OPTIONS);
        rpc.attach(tcpServer);
        const bound = await listenTcp(tcpServer, config.grpc.tcp_address);
        grpcServers.push(tcpServer);
        log.info("serving...", { address: `${bound.host}:${bound.port}` });
      }
      const source = {
        vars: () =>
          debugVars({
            started,
            plugins,
            inFlight: () => rpc.inFlight,
            extra: () => ({ version: VERSION }),
          }),
      };
      if (config.debug.address) {
        const debug = await startDebugServer({
          address: config.debug.address,
          uid: config.debug.uid,
          gid: config.debug.gid,
          source,
          log,
        });
        closers.push(debug);
        log.info("debug server serving...", { address: debug.address });
      }
      if (config.metrics.address && metrics) {
        const { startMetricsServer } = await import("./metrics.ts");
        const server = await startMetricsServer({ address: config.metrics.address, metrics, log });
        closers.push(server);
        log.info("metrics server serving...", { address: server.address });
      }
    } catch (err) {
      for (const server of grpcServers) await closeServer(server).catch(() => {});
      // With no grace, closeServer also destroys the ttrpc connections it accepted.
      if (ttrpcListening) await closeServer(ttrpc, { graceMs: 0 });
      await cleanup();
      throw err instanceof BootError ? err : new BootError((err as Error).message, { cause: err });
    }
    // Boot is a burst of its own: loading modules and plugins leaves ~7 MiB of garbage in the
    // heap (measured: VmRSS 89 → 81.5 MiB once trimmed). Give it back once nothing has come in
    // for half a second, instead of keeping it until the first burst of traffic.
    heapTrimmer.burstEnded(500);
    return new Server({
      config,
      plugins,
      events,
      started,
      log,
      rpc,
      stopping,
      grpcServers,
      ttrpc,
      closers,
    });
  }

  /** The lines SIGUSR1 writes to the log. */
  diagnostics(): string {
    return diagnosticDump({
      vars: () =>
        debugVars({
          started: this.started,
          plugins: this.plugins,
          inFlight: () => this.#rpc.inFlight,
          extra: () => ({ version: VERSION, eventSubscribers: this.events.subscriberCount }),
        }),
    });
  }

  /**
   * Graceful stop: refuse new connections, tell plugins (health goes NOT_SERVING, streams
   * end), wait up to `drainTimeoutMs` for in-flight RPCs, then close everything in reverse.
   */
  async stop(drainTimeoutMs = DRAIN_TIMEOUT_MS): Promise<void> {
    const log = this.#log;
    // Stop accepting first; existing sessions keep running until drained. Shims keep their
    // ttrpc connections until then too, so events of the RPCs draining still arrive.
    const closing = this.#grpcServers.map((server) => closeServer(server));
    const ttrpcClosed = stopAccepting(this.#ttrpc);
    this.#stopping.abort();
    const deadline = AbortSignal.timeout(drainTimeoutMs);
    await this.#rpc.drain(deadline);
    if (deadline.aborted) {
      log.warn("stopping with RPCs still in flight", { inflight: this.#rpc.inFlight });
    }
    await Promise.allSettled(closing);
    this.#ttrpc.closeConnections();
    await ttrpcClosed;
    for (const closer of [...this.#closers].reverse()) {
      await closer.close().catch((err) => log.warn("failed to close listener", { error: err }));
    }
    await closePlugins(
      this.plugins,
      (uri, err) => log.warn("failed to close plugin", { id: uri, error: err }),
    );
  }
}

/**
 * One ttrpc server with every plugin's ttrpc services (containerd's RegisterTTRPC). A service
 * offered twice is a BootError. Errors reach the shim as containerd's ToGRPC sends them: typed
 * errors with their kind suffix (`...: invalid argument`); anything else is logged with its
 * stack and answers Unknown.
 */
function createTtrpcServer(specs: readonly TtrpcServiceSpec[], log: Logger): TtrpcServer {
  const server = new TtrpcServer();
  const seen = new Set<string>();
  for (const spec of specs) {
    const name = spec.service.typeName;
    if (seen.has(name)) throw new BootError(`ttrpc service ${name} is offered by two plugins`);
    seen.add(name);
    const impl: Record<string, (input: unknown, ctx: TtrpcCallContext) => Promise<unknown>> = {};
    for (const [method, handler] of Object.entries(spec.impl)) {
      if (typeof handler !== "function") continue;
      const call = handler as (input: unknown, ctx: TtrpcCallContext) => unknown;
      impl[method] = async (input, ctx) => {
        try {
          return await call(input, ctx);
        } catch (err) {
          if (err instanceof ErrdefsError) throw fromCode(err.code, grpcMessageOf(err));
          log.error("ttrpc call failed", {
            method: `/${name}/${method}`,
            error: err,
            stack: err instanceof Error ? err.stack : undefined,
          });
          throw err;
        }
      };
    }
    // The spec is erased (checked against its descriptor where ttrpcServiceSpec built it).
    server.register(spec.service, impl as unknown as TtrpcServiceImpl<DescService>);
  }
  return server;
}

/** Root and state must be set and differ; both are created 0711 (the seed's server.New). */
async function prepareDirs(config: Config): Promise<void> {
  if (!config.root) throw new BootError("root must be specified");
  if (!config.state) throw new BootError("state must be specified");
  if (config.root === config.state) throw new BootError("root and state must be different paths");
  for (const dir of [config.root, config.state]) {
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o711 });
      await Deno.chmod(dir, 0o711);
    } catch (err) {
      throw new BootError(`cannot create ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (config.temp) await Deno.mkdir(config.temp, { recursive: true, mode: 0o711 });
}

/**
 * Registrations from plugin_dir: each `*.ts`/`*.js` module there is imported and its
 * `plugins` export (an array of registrations) is loaded — containerd's Go plugins, as modules.
 */
async function loadPluginDir(dir: string): Promise<Registration[]> {
  if (!dir) return [];
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && /\.(ts|js|mjs)$/.test(entry.name)) names.push(entry.name);
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw new BootError(`plugin_dir ${dir}: ${(err as Error).message}`);
  }
  const out: Registration[] = [];
  for (const name of names.sort()) {
    const path = `${dir}/${name}`;
    let mod: { plugins?: unknown };
    try {
      mod = await import(new URL(`file://${path}`).href);
    } catch (err) {
      throw new BootError(`plugin module ${path}: ${(err as Error).message}`);
    }
    if (!Array.isArray(mod.plugins)) {
      throw new BootError(`plugin module ${path}: expected an exported "plugins" array`);
    }
    out.push(...(mod.plugins as Registration[]));
  }
  return out;
}

/** Inputs of runDaemon, as the CLI prepares them. */
export interface RunDaemonOptions {
  config: Config;
  /** Config warnings to log once the logger exists. */
  warnings: string[];
  registrations: readonly Registration[];
  pluginConfigs: Map<string, unknown>;
}

/**
 * Run the daemon until SIGINT/SIGTERM: boot, notify readiness, wait, stop. Returns the exit
 * code: 0 after a clean stop, 1 when boot fails (the reason logged as one line).
 */
export async function runDaemon(options: RunDaemonOptions): Promise<number> {
  const { config } = options;
  const level = isLogLevel(config.debug.level) ? config.debug.level : "info";
  const log = createLogger({ level, format: config.debug.format === "json" ? "json" : "text" });
  let server: Server | undefined;
  // Before SIGUSR1 is handled: keep the runtime's SIGUSR1 debugger from opening (see module).
  const inspectorGuard = await holdInspectorPort();
  if (!inspectorGuard.held) {
    log.debug("inspector port held elsewhere", { reason: inspectorGuard.reason });
  }
  const signals = installSignals({
    onStop: (signal) => log.info("stopping containerd-ts", { signal }),
    onForcedExit: (signal) => {
      log.warn("second signal: exiting at once", { signal });
      Deno.exit(1);
    },
    onDump: () => {
      log.info("SIGUSR1 diagnostic dump\n" + (server?.diagnostics() ?? "daemon is still booting"));
    },
  });
  try {
    for (const warning of options.warnings) log.warn(warning);
    const booting = performance.now();
    log.info("starting containerd-ts", {
      version: VERSION,
      root: config.root,
      state: config.state,
    });
    try {
      server = await Server.start({
        config,
        registrations: options.registrations,
        pluginConfigs: options.pluginConfigs,
        log,
      });
    } catch (err) {
      log.error(`containerd-ts failed to boot: ${(err as Error).message}`);
      if (!(err instanceof BootError)) {
        log.debug("boot failure detail", { stack: (err as Error).stack });
      }
      return 1;
    }
    try {
      notify("READY=1");
    } catch (err) {
      log.warn("failed to notify readiness", { error: err });
    }
    log.info(
      `containerd-ts successfully booted in ${((performance.now() - booting) / 1000).toFixed(3)}s`,
    );
    await signals.stopRequested;
    await server.stop();
    log.info("containerd-ts stopped");
    return 0;
  } finally {
    signals.uninstall();
    await inspectorGuard.close();
  }
}
