// `npx cdk synth` in this directory (after `npm run build` at the repository root, which makes the Lambda
// bundles the stack deploys). cdk-nag's AwsSolutions pack checks every synth.
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { OrdersStack } from './orders-stack.js';

const app = new App();
new OrdersStack(app, 'Orders', { alarmEmail: app.node.tryGetContext('alarmEmail') });
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
