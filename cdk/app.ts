import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { BrokerStack } from './broker-stack.js';
import { loadBrokerConfig } from './config.js';

// `npm run build` first: the stack deploys the esbuild bundles in dist/functions (see docs/aws.md).
const app = new App();
const config = loadBrokerConfig(app.node);
new BrokerStack(app, config.stackName, config);
// cdk-nag's AwsSolutions pack on every synth: any finding not acknowledged in the constructs fails it.
// The acknowledgements and their reasons are also written into the template's metadata, for audit.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
