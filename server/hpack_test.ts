import assert from "node:assert/strict";
import { encodeHeaders, HpackDecoder, HpackError, huffmanDecode } from "./hpack.ts";

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!.map((b) => parseInt(b, 16)));
/** An assert.throws matcher: an HpackError whose message contains `part`. */
const hpackError = (part: string) => (err: unknown) =>
  err instanceof HpackError && err.message.includes(part);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("huffmanDecode: RFC 7541 C.4.1 and C.6.1 strings", () => {
  assert.deepEqual(text(huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"))), "www.example.com");
  assert.deepEqual(text(huffmanDecode(hex("a8eb 1064 9cbf"))), "no-cache");
  assert.deepEqual(text(huffmanDecode(hex("6402"))), "302");
  assert.deepEqual(text(huffmanDecode(hex("aec3 771a 4b"))), "private");
});

Deno.test("huffmanDecode: rejects long or zero padding", () => {
  // "0" is 00000 (5 bits); padding with zeros is invalid.
  assert.throws(() => huffmanDecode(hex("00")), hpackError("padding"));
  // A whole byte of ones after a complete symbol is more than 7 bits of padding.
  assert.throws(() => huffmanDecode(hex("07 ff")), HpackError);
});

Deno.test("HpackDecoder: RFC 7541 C.3 requests share the dynamic table", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")), [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ]);
  assert.deepEqual(d.decode(hex("8286 84be 5808 6e6f 2d63 6163 6865")), [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ]);
  assert.deepEqual(
    d.decode(hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65")),
    [
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ],
  );
});

Deno.test("HpackDecoder: RFC 7541 C.4 requests with Huffman strings", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).at(-1), [
    ":authority",
    "www.example.com",
  ]);
  assert.deepEqual(d.decode(hex("8286 84be 5886 a8eb 1064 9cbf")).slice(3), [
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ]);
  assert.deepEqual(
    d.decode(hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")).at(-1),
    ["custom-key", "custom-value"],
  );
});

Deno.test("HpackDecoder: a table size update evicts, bad indexes and oversize lists throw", () => {
  const d = new HpackDecoder();
  d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"));
  assert.deepEqual(d.decode(hex("be")), [["custom-key", "custom-value"]]);
  assert.deepEqual(d.decode(hex("20")), []); // size 0: the entry is gone
  assert.throws(() => d.decode(hex("be")), hpackError("out of range"));
  assert.throws(() => d.decode(hex("80")), hpackError("index 0"));
  assert.throws(() => d.decode(hex("3fe21f")), hpackError("table size"));
  assert.throws(() => d.decode(hex("82 20")), hpackError("after a header field"));
  assert.throws(() => d.decode(hex("0f")), hpackError("truncated"));
  const small = new HpackDecoder(40);
  assert.throws(() => small.decode(hex("8286")), hpackError("header list larger"));
});

Deno.test("encodeHeaders: round trip through the decoder, long values included", () => {
  const long = "x".repeat(300);
  const fields: [string, string][] = [
    [":status", "200"],
    [":status", "404"],
    ["content-type", "application/grpc"],
    ["grpc-status", "0"],
    ["grpc-message", long],
    ["x-ünicode", "wert ü"],
  ];
  const block = encodeHeaders(fields);
  assert.deepEqual(block[0], 0x88);
  assert.deepEqual(new HpackDecoder().decode(block), fields);
});
