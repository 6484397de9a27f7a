// `azd up` provisions everything the export app needs, and nothing on customers' accounts:
// a Flex Consumption function app (Python 3.11, Linux) running as a user-assigned managed identity, its own
// storage account (control storage and the deployment package; shared keys off), a Key Vault on Azure RBAC for
// destination secrets, Log Analytics and Application Insights (local authentication off), the identity's
// least-privilege role assignments, and, optionally, a virtual network with private endpoints.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('The azd environment name; with the subscription and location it seeds the resource names.')
param environmentName string

@minLength(1)
@description('Azure region of every resource; it must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({ azd: { type: 'location' } })
param location string

@minLength(3)
@maxLength(11)
@description('Lowercase letters and digits that start every resource name (the storage account name allows no more).')
param namePrefix string = 'blobexport'

@description('NCRONTAB schedule (six fields, UTC) of the export timer: the sweeper for lost queue messages, orphans and retention.')
param exportSchedule string = '0 */5 * * * *'

@description('The queue in the app\'s own storage account that carries export units to the queue-triggered function.')
param exportQueueName string = 'export-units'

@description('Comma-separated storage accounts a destination may reach with the app\'s own managed identity (empty refuses such destinations).')
param managedIdentityAccounts string = ''

@description('When a destination may name a secret that already exists in Key Vault, the prefix such names must start with (empty: none).')
param customerSecretPrefix string = ''

@description('Integrate the app with a new virtual network and reach storage and Key Vault through private endpoints only.')
param vnetEnabled bool = false

@description('Address space of that virtual network (used only with vnetEnabled).')
param vnetAddressPrefix string = '10.20.0.0/16'

@description('The app\'s integration subnet, inside vnetAddressPrefix (delegated to Microsoft.App/environments).')
param appSubnetPrefix string = '10.20.0.0/24'

@description('The private endpoints\' subnet, inside vnetAddressPrefix.')
param privateEndpointSubnetPrefix string = '10.20.1.0/24'

@allowed([ 512, 2048, 4096 ])
@description('Memory of each instance, in MB.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('The most instances the plan scales out to.')
param maximumInstanceCount int = 100

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName, application: 'azure-blob-export' }
var functionAppName = '${namePrefix}-func-${resourceToken}'
// The Flex Consumption deployment package lives in the app's own account, in this container.
var deploymentContainerName = 'app-package-${take(resourceToken, 8)}'
var controlContainerName = 'export-control'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${namePrefix}-id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: '${namePrefix}-log-${resourceToken}'
    appInsightsName: '${namePrefix}-appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: take('${namePrefix}${resourceToken}', 24)
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    controlContainerName: controlContainerName
    exportQueueName: exportQueueName
    privateOnly: vnetEnabled
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: take('${namePrefix}-kv-${resourceToken}', 24)
    location: location
    tags: tags
    privateOnly: vnetEnabled
  }
}

module network 'modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: '${namePrefix}-vnet-${resourceToken}'
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    endpointsSubnetPrefix: privateEndpointSubnetPrefix
    storageAccountId: storage.outputs.id
    keyVaultId: vault.outputs.id
  }
}

module roles 'modules/role-assignments.bicep' = {
  name: 'role-assignments'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: vault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module app 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  // The host reads its storage and the app its vault as soon as it starts: the roles come first.
  dependsOn: [ roles ]
  params: {
    name: functionAppName
    planName: '${namePrefix}-plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    deploymentContainerName: deploymentContainerName
    controlContainerName: controlContainerName
    keyVaultUri: vault.outputs.uri
    appInsightsConnectionString: monitoring.outputs.connectionString
    exportSchedule: exportSchedule
    exportQueueName: exportQueueName
    managedIdentityAccounts: managedIdentityAccounts
    customerSecretPrefix: customerSecretPrefix
    subnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
}

// azd reads these into the environment (.azure/<env>/.env); the README's commands use them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output API_BASE_URL string = 'https://${app.outputs.defaultHostName}/api'
output KEY_VAULT_URL string = vault.outputs.uri
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.workspaceCustomerId
