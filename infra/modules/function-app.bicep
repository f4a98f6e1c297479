// The Flex Consumption plan and Function App that run the `handler` custom
// handler (runtime `custom` 1.0). The code arrives as a zip package in the
// deployment container (scripts/package.sh, then config-zip).

@description('Name of the Function App.')
@minLength(2)
@maxLength(60)
param name string

@description('Name of the Flex Consumption plan.')
@minLength(1)
@maxLength(60)
param planName string

@description('Region of the plan and the app.')
param location string

@description('Tags of the plan and the app.')
param tags object

@description('Resource id of the handler\'s user-assigned identity.')
param identityId string

@description('Client id of the handler\'s user-assigned identity (AZURE_CLIENT_ID).')
param identityClientId string

@description('Blob endpoint of the storage account, ending in "/".')
param blobEndpoint string

@description('Queue endpoint of the storage account.')
param queueEndpoint string

@description('Table endpoint of the storage account (the host\'s diagnostic events).')
param tableEndpoint string

@description('Container that holds the deployment package.')
param deploymentContainerName string

@description('Connection string of the Application Insights component.')
param appInsightsConnectionString string

@description('Memory of one instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@description('Most instances the app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('The handler\'s own app settings (name to value), README "Configuration".')
param handlerSettings object

// Settings of the Functions host and the platform. FUNCTIONS_WORKER_RUNTIME
// and FUNCTIONS_EXTENSION_VERSION are deliberately absent: Flex Consumption
// takes the runtime from functionAppConfig.runtime and rejects them.
var hostSettings = {
  // Service URIs rather than __accountName, which works only in Azure
  // public (not in sovereign clouds or with custom DNS).
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // Also read by the handler: the status report peeks at the poison queue.
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

// Settings the handler reads that do not come from parameters.
var identitySettings = {
  // Tokens come from the platform's managed-identity endpoint; never the
  // Azure CLI or a secret in Azure.
  CMK_CREDENTIAL: 'managed-identity'
  AZURE_CLIENT_ID: identityClientId
}

var appSettings = union(hostSettings, identitySettings, handlerSettings)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is a plan option with its own cost; rotations are retried from Event Grid and the queue if a zone is lost
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to KeyEvent over the public endpoint (it cannot reach a private one); the webhook requires the host's eventgrid_extension system key and the Status function a function key
  // checkov:skip=CKV_AZURE_17: no caller presents a client certificate (Event Grid authenticates with the system key); requiring one would stop every delivery
  // checkov:skip=CKV_AZURE_212: Flex Consumption has no fixed instance count; instances follow the events, and failed work is retried by Event Grid and the queue
  // checkov:skip=CKV_AZURE_213: Flex Consumption has no health-check path setting; the Functions host probes the handler itself (readiness GET) and restarts it if it exits
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
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
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

// No basic-auth (publishing profile) deployments: the package goes to the
// deployment container with an Entra token (az functionapp deployment
// source config-zip signs in as the operator).
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

output id string = app.id
output name string = app.name
