/**
 * io.containerd.grpc.v1.version: containerd.services.version.v1.Version, the first call every
 * client makes (`ctr version`).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { register } from "../../server/plugin.ts";
import { type RpcServices, serviceSpec } from "../../server/rpc.ts";
import { REVISION, VERSION } from "../../server/version.ts";
import {
  Version,
  VersionResponseSchema,
} from "../../proto/gen/containerd/services/version/v1/version_pb.ts";
import { GRPCPlugin } from "../types.ts";

register({
  type: GRPCPlugin,
  id: "version",
  init(): RpcServices {
    const response = create(VersionResponseSchema, { version: VERSION, revision: REVISION });
    return { services: [serviceSpec(Version, { version: () => response })] };
  },
});
