/**
 * CloudWatch embedded metric format: a JSON log line that CloudWatch Logs turns into metrics, the
 * convention for Lambda (no API call, no extra latency). See the AWS "Embedded metric format" spec.
 */
export interface EmfMetric {
  name: string;
  value: number;
  unit: 'Seconds' | 'Count' | 'Milliseconds' | 'None';
}

export function emfLine(
  namespace: string,
  dimensions: Record<string, string>,
  metrics: readonly EmfMetric[],
  at: Date,
): string {
  const record: Record<string, unknown> = {
    _aws: {
      Timestamp: at.getTime(),
      CloudWatchMetrics: [
        {
          Namespace: namespace,
          Dimensions: [Object.keys(dimensions)],
          Metrics: metrics.map((m) => ({ Name: m.name, Unit: m.unit })),
        },
      ],
    },
    ...dimensions,
  };
  for (const m of metrics) record[m.name] = m.value;
  return JSON.stringify(record);
}
