// The Flex Consumption plan and the function app (Python 3.11 on Linux), running as the user-assigned identity.
// The app settings are exactly the names the app reads (shared/settings.py) and the host reads; nothing holds a
// key: storage, Key Vault and Application Insights are all reached with the identity.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param blobEndpoint string
param queueEndpoint string
param deploymentContainerName string
param controlContainerName string
param keyVaultUri string
param appInsightsConnectionString string
param exportSchedule string
param exportQueueName string
param managedIdentityAccounts string
param customerSecretPrefix string

@description('The delegated subnet to integrate with; empty for none.')
param subnetId string

param instanceMemoryMB int
param maximumInstanceCount int

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  // checkov:skip=CKV_AZURE_225: Flex Consumption offers zone redundancy only in some regions and with always-ready instances (a cost); the queue and the timer finish any export an outage interrupted
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the app to deploy `services.api` (azure.yaml) to by this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // checkov:skip=CKV_AZURE_222: the analytics platform posts batches from the internet; each HTTP function needs its own function key (shared/api/functions.py)
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales out from zero instances; batches wait durably in control storage and the queue, so a cold start delays an export and loses nothing
    // checkov:skip=CKV_AZURE_213: Flex Consumption has no App Service health check (healthCheckPath); probe GET /api/health/ready from outside (README, Health)
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    // checkov:skip=CKV_AZURE_17: the platform's webhooks authenticate with the intake function's key, not a client certificate
    clientCertEnabled: false
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: { name: 'python', version: '3.11' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // No healthCheckPath: App Service's health check is a feature of the Premium and Dedicated plans, not of
      // Flex Consumption. Probe GET /api/health/ready from outside instead (README, "Health").
      appSettings: [
        // The host's storage, by identity (Flex Consumption reads the deployment package with it too).
        { name: 'AzureWebJobsStorage__blobServiceUri', value: blobEndpoint }
        { name: 'AzureWebJobsStorage__queueServiceUri', value: queueEndpoint }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
        // The app's DefaultAzureCredential (control storage, Key Vault) picks the user-assigned identity by it.
        { name: 'AZURE_CLIENT_ID', value: identityClientId }
        // Telemetry, sent with an Entra ID token of the identity (the resource has local authentication off).
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identityClientId};Authorization=AAD' }
        // The app's own settings (shared/settings.py). Control storage is AzureWebJobsStorage__blobServiceUri
        // above; ALLOW_HTTP_LOOPBACK stays unset, and the app refuses to start in Azure without KEY_VAULT_URL.
        { name: 'KEY_VAULT_URL', value: keyVaultUri }
        { name: 'CONTROL_CONTAINER', value: controlContainerName }
        { name: 'EXPORT_SCHEDULE', value: exportSchedule }
        { name: 'EXPORT_QUEUE_NAME', value: exportQueueName }
        { name: 'MANAGED_IDENTITY_ACCOUNTS', value: managedIdentityAccounts }
        { name: 'CUSTOMER_SECRET_PREFIX', value: customerSecretPrefix }
      ]
    }
  }
}

// No publishing with a user name and password: azd and the workflow deploy with Entra ID tokens.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: { allow: false }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: { allow: false }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
