/**
 * The `activation` option of the fused ops and layers (`fusedLinear`, `fusedConv2d`, batch norm,
 * `nn.linear`, `nn.conv2d`, `nn.batchNorm`): its check, written once.
 *
 * @module
 */
import type { Activation } from "../backend.ts";

/**
 * `value` as an {@linkcode Activation} ("none" when undefined); anything but "none" or "relu" is a
 * RangeError naming `who` and the value.
 */
export function checkActivation(who: string, value: unknown): Activation {
  const activation = value ?? "none";
  if (activation !== "none" && activation !== "relu") {
    throw new RangeError(`${who}: activation must be "none" or "relu", got ${JSON.stringify(activation)}`);
  }
  return activation;
}
