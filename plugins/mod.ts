/**
 * The one list of built-in plugins. Importing a module registers its plugins; the order here
 * is the registration order, which the registry keeps where requirements allow.
 *
 * @module
 */
import "./version/version.ts";
import "./health/health.ts";
import "./introspection/introspection.ts";
import "./content/plugin.ts";
import "./snapshots/others.ts";
import "./snapshots/native/plugin.ts";
import "./snapshots/overlay/plugin.ts";
import "./metadata/plugin.ts";
import "./gc/plugin.ts";
import "./leases/plugin.ts";
import "./namespaces/service.ts";
import "./content/service.ts";
import "./leases/service.ts";
import "./events/plugin.ts";
import "./snapshots/service.ts";
import "./diff/plugin.ts";
import "./diff/service.ts";
import "./images/service.ts";
import "./containers/service.ts";
import "./runtime/plugin.ts";
import "./monitor/cgroups.ts";
import "./tasks/service.ts";
