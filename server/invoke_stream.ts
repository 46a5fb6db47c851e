/**
 * Server-streaming calls on the gRPC fast path (rpc.ts): the implementation behind the
 * interceptor chain, with the requests and responses Connect's `transformInvokeImplementation`
 * gives them, in fewer layers per call.
 *
 * Connect's version runs each call through three downleveled async-generator helpers of its
 * ES2017 build, a fourth iterator that normalizes every message and two reads of an iterator
 * to get the one request. `ctr content get` makes one Read stream per 32 KiB, so a 256 MiB blob
 * is 8 192 of them; those layers were ~15 µs of the daemon's ~200 µs of CPU per Read in a
 * profile. Here the chain still sees a StreamRequest whose message is an iterable of the one
 * request, and the implementation gets the request itself unless an interceptor replaced
 * that iterable (then it is read as Connect reads it, with Connect's errors). Response
 * headers are copied when the chain answers and trailers when the stream ends, and each
 * message is made a full message with `create` before the interceptors see it, as Connect
 * does.
 *
 * @example
 * ```ts
 * import { invokeServerStreaming } from "./invoke_stream.ts";
 * // const output = await invokeServerStreaming(spec, context, request, interceptors);
 * // for (let r = await output.next(); !r.done; r = await output.next()) send(r.value);
 * ```
 * @module
 */
import {
  create,
  type DescMessage,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";

/** A server-streaming method's implementation as createServiceImplSpec gives it. */
export type ServerStreamingSpec = Extract<MethodImplSpec, { kind: "server_streaming" }>;

/** The function each interceptor wraps: Connect's AnyFn. */
type AnyFn = (req: UnaryRequest | StreamRequest) => Promise<UnaryResponse | StreamResponse>;

/**
 * Run `spec`'s implementation for `input` behind `interceptors` (outermost first) and return
 * its response messages. Rejects with what the chain throws before the stream starts; the
 * iterator rejects with what the implementation throws while it runs. Call `return` on the
 * iterator when stopping early, so the implementation's `finally` blocks run.
 */
export async function invokeServerStreaming(
  spec: ServerStreamingSpec,
  context: HandlerContext,
  input: MessageShape<DescMessage>,
  interceptors: readonly Interceptor[],
): Promise<AsyncIterator<MessageShape<DescMessage>>> {
  const method = spec.method;
  const request = singleMessage(input);
  const call: AnyFn = async (req) => {
    const message = req.message === request
      ? input
      : await onlyMessage(req.message as AsyncIterable<MessageShape<DescMessage>>);
    // The context the implementation sees is the request's, which is `context` unless an
    // interceptor replaced one of its parts.
    const handlerContext =
      req.service === context.service && req.header === context.requestHeader &&
        req.signal === context.signal && req.contextValues === context.values
        ? context
        : {
          ...context,
          service: req.service,
          requestHeader: req.header,
          signal: req.signal,
          values: req.contextValues,
        };
    return {
      stream: true,
      message: normalized(method.output, spec.impl(message, handlerContext)),
      method,
      service: method.parent,
      header: context.responseHeader,
      trailer: context.responseTrailer,
    };
  };
  let next: AnyFn = call;
  for (let i = interceptors.length - 1; i >= 0; i--) next = interceptors[i]!(next);
  const response = await next({
    stream: true,
    message: request,
    method,
    service: method.parent,
    requestMethod: context.requestMethod,
    url: context.url,
    signal: context.signal,
    header: context.requestHeader,
    contextValues: context.values,
  });
  copyHeaders(response.header, context.responseHeader);
  const messages = response.stream
    ? (response.message as AsyncIterable<MessageShape<DescMessage>>)[Symbol.asyncIterator]()
    : singleMessage(response.message)[Symbol.asyncIterator]();
  return {
    next: () =>
      messages.next().then((result) => {
        if (result.done === true) copyHeaders(response.trailer, context.responseTrailer);
        return result;
      }),
    return: (value?: unknown) =>
      messages.return === undefined
        ? Promise.resolve({ done: true, value })
        : messages.return(value),
  };
}

/** The implementation's messages made full messages of `schema` with `create`, as Connect does. */
function normalized<S extends DescMessage>(
  schema: S,
  messages: AsyncIterable<MessageInitShape<S>>,
): AsyncIterable<MessageShape<S>> {
  return {
    [Symbol.asyncIterator]() {
      const it = messages[Symbol.asyncIterator]();
      const full = (result: IteratorResult<MessageInitShape<S>>): IteratorResult<MessageShape<S>> =>
        result.done === true ? result : { done: false, value: create(schema, result.value) };
      return {
        next: () => it.next().then(full),
        return: (value?: unknown) =>
          it.return === undefined
            ? Promise.resolve({ done: true, value })
            : it.return(value).then(full),
        ...(it.throw === undefined ? {} : { throw: (e?: unknown) => it.throw!(e).then(full) }),
      };
    },
  };
}

/** An async iterable of one message: a server-streaming call's request, or a collected body. */
export function singleMessage<T>(message: T): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      let done = false;
      return {
        next(): Promise<IteratorResult<T>> {
          if (done) return Promise.resolve({ done: true, value: undefined });
          done = true;
          return Promise.resolve({ done: false, value: message });
        },
        return(): Promise<IteratorResult<T>> {
          done = true;
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
}

/** The one message of a request stream an interceptor replaced, with Connect's errors. */
async function onlyMessage<T>(messages: AsyncIterable<T>): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) {
    throw new ConnectError(
      "protocol error: missing input message for server-streaming method",
      Code.Unimplemented,
    );
  }
  const second = await it.next();
  if (second.done !== true) {
    throw new ConnectError(
      "protocol error: received extra input message for server-streaming method",
      Code.Unimplemented,
    );
  }
  return first.value;
}

/** Replace `to`'s entries with `from`'s (nothing when they are the same object). */
function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const key of [...to.keys()]) to.delete(key);
  from.forEach((value, key) => to.set(key, value));
}
