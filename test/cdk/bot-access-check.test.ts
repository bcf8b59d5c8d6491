/**
 * Synth refuses a bot output the authority would refuse: the Bot construct runs the broker's own access
 * decision (src/cli/check.ts, as `broker check`) for every output against the authority's resources, and
 * fails with the bot, output, deciding role, rule and reason.
 */
import { App, Stack } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { Authority } from '../../cdk/constructs/authority.js';
import { Bot } from '../../cdk/constructs/bot.js';
import { BrokerPropError } from '../../cdk/constructs/props.js';
import { inlineCode, read } from '../support/cdk.js';

const ordersConfig = read('examples/aws/bots/orders.yaml');

function synthBot(configYaml: string): () => void {
  return () => {
    const app = new App();
    const stack = new Stack(app, 'S');
    const authority = new Authority(stack, 'Authority', {
      resourcesYaml: read('examples/aws/resources.yaml'),
      code: inlineCode(),
    });
    new Bot(stack, 'Bot', {
      name: 'orders',
      configYaml,
      configFile: 'orders.yaml',
      authority,
      code: inlineCode(),
    });
    app.synth();
  };
}

describe('Bot access check at synth', () => {
  it('synthesizes the shipped example output, which the roles allow', { timeout: 120_000 }, () => {
    expect(synthBot(ordersConfig)).not.toThrow();
  });

  it('fails synth for an output the roles refuse, naming bot, output, role, rule and reason', () => {
    const config = ordersConfig.replace('username: orders_app', 'username: reports_ro');
    expect(synthBot(config)).toThrow(BrokerPropError);
    expect(synthBot(config)).toThrow(
      'S/Bot: orders.yaml outputs[0] is "reports_ro@orders-postgres/orders": bot "orders" outputs[0] (reports_ro@orders-postgres/orders) would be refused: role "orders-app", rule allow.db_users (["orders_app"]): database user "reports_ro" is not in allow.db_users',
    );
    expect(synthBot(config)).toThrow('`broker check -f RESOURCES -c BOT_CONFIG` runs the same check');
  });

  it('fails synth for an output without database on postgres, whose roles name db_names', () => {
    const config = ordersConfig.replace(/\n\s+database: orders/, '');
    expect(synthBot(config)).toThrow(
      /outputs\[0\] .*rule allow\.db_names \(\["orders"\]\): database name "" is not in allow\.db_names/,
    );
  });
});
