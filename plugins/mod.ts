/**
 * The one list of built-in plugins. Importing a module registers its plugins; the order here
 * is the registration order, which the registry keeps where requirements allow.
 *
 * @module
 */
import "./version/version.ts";
import "./health/health.ts";
import "./introspection/introspection.ts";
