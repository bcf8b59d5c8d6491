export interface Machine {
  /** `model name` from /proc/cpuinfo. */
  cpuModel: string;
  /** os.availableParallelism(). */
  cores: number;
  /** The CPU reports the `hypervisor` flag. */
  virtualised: boolean;
  memoryGiB: number;
  os: string;
  node: string;
  /** OpenSSL version Node is built with (what `crypto.sign` runs on). */
  nodeOpenssl: string;
  /** `openssl version` of the command-line tool used as the yardstick. */
  systemOpenssl: string;
  /** 1, 5 and 15 minute load averages when the run started. */
  loadAverage: number[];
}

export function describeMachine(): Machine;
export function machineLine(machine: Machine): string;
